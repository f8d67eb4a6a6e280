"""This machine's limit for a model: the best GEMM rate on the model's own MatMul shapes.

For each precision the limit is the fastest runtime's rate (onnxruntime or OpenVINO) over the
model's weight MatMuls at M = batch x sequence rows, each shape weighted by how often the model
runs it: total operations / total time, one `gemm_check.verify` timing per distinct shape, its
fastest run (a limit is what the machine can do: a median carries a shared host's jitter, which
moved the limit by a third between two quiet runs). The
result is cached per CPU (model name, flags, threads, runtime versions, shapes) under guard's
cache folder, so `guard bench` measures once per machine and model. The theoretical peak (SIMD
width x clock) is given beside it where both are known.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from guardcli.core.paths import cache_dir

# Which measured paths count for which precision of a bench variant.
PRECISION_OF = {
    "fp32": "fp32",
    "ov-fp32": "fp32",
    "fp16": "fp16",
    "bf16": "bf16",
    "int8": "int8",
    "ov-int8": "int8",
}
SECONDS_PER_SHAPE = 0.5
# Changes when the measure does, so that limits cached in an older form are measured again.
LIMIT_FORM = "best-of-runs"


def cache_path() -> Path:
    return cache_dir() / "gemm-limits.json"


def _key(m: int, weights: dict[tuple[int, int], int], threads: int) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from guardcli.core.cpu import read_cpu

    info = read_cpu()
    versions: list[str | None] = []
    for dist in ("onnxruntime", "openvino"):
        try:
            versions.append(version(dist))
        except PackageNotFoundError:
            versions.append(None)
    parts = [
        LIMIT_FORM,
        info.model,
        sorted(info.flags),
        threads,
        versions,
        m,
        sorted([k, n, c] for (k, n), c in weights.items()),
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]


def measure(
    m: int,
    weights: dict[tuple[int, int], int],
    *,
    threads: int | None = None,
    seconds: float | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """{"paths": {path: GOP/s}, "limits": {precision: {"gops", "path"}}, "m": m,
    "other_work": share} for the model's weight shapes at `m` rows; from the cache when this
    CPU measured them before, unless `fresh`. `other_work`: the share of the machine's CPU time
    other processes used meanwhile (a limit timed beside other work is too low)."""
    from guardcli.core.cpu import OtherWork, usable_cpus
    from guardcli.runtime.gemm_check import verify

    threads = threads or usable_cpus()
    key = _key(m, weights, threads)
    path = cache_path()
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = {}
    if key in stored and not fresh:
        return {**stored[key], "cached": True}
    others = OtherWork()
    ops: dict[str, float] = {}
    seconds_of: dict[str, float] = {}
    timed: dict[str, int] = {}
    seconds = seconds or SECONDS_PER_SHAPE
    for (k, n), count in sorted(weights.items()):
        for t in verify((m, k, n), threads=threads, seconds_per_variant=seconds):
            if t.error is not None or t.best_ms != t.best_ms:
                continue
            ops[t.variant] = ops.get(t.variant, 0.0) + count * 2.0 * m * k * n
            seconds_of[t.variant] = seconds_of.get(t.variant, 0.0) + count * t.best_ms / 1e3
            timed[t.variant] = timed.get(t.variant, 0) + 1
    # A path counts only when it ran every shape (a missing kernel fails some).
    complete = [v for v in ops if timed[v] == len(weights)]
    paths = {v: ops[v] / seconds_of[v] / 1e9 for v in complete}
    limits: dict[str, dict[str, Any]] = {}
    for variant, rate in paths.items():
        precision = PRECISION_OF.get(variant)
        if precision and rate > limits.get(precision, {}).get("gops", 0.0):
            limits[precision] = {"gops": rate, "path": variant}
    share = others.share()
    result = {
        "m": m,
        "threads": threads,
        "paths": paths,
        "limits": limits,
        "other_work": None if share is None else round(share, 3),
    }
    stored[key] = result
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored, indent=1), encoding="utf-8")
    return {**result, "cached": False}


def clock_ghz() -> float | None:
    """The clock /proc/cpuinfo reports (a VM's may be nominal), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":", 1)[1]) / 1000
    except (OSError, ValueError):
        pass
    return None


def theoretical_peak(flags: set[str], cores: int, ghz: float | None) -> dict[str, Any]:
    """GOP/s per precision from SIMD width x clock x cores, assuming two vector FMA ports per
    core (AMX: one tile unit, 1024 INT8 or 512 BF16 multiply-adds a cycle); None without a
    clock."""
    bits = 512 if "avx512f" in flags else 256 if "avx2" in flags else 128
    lanes = bits // 32
    per_cycle: dict[str, float] = {"fp32": 2 * lanes * 2}
    if "amx_int8" in flags:
        per_cycle["int8"] = 2048
    elif flags & {"avx512_vnni", "avx_vnni", "avx512vnni"}:
        per_cycle["int8"] = 2 * lanes * 4 * 2
    if "amx_bf16" in flags:
        per_cycle["bf16"] = 1024
    elif "avx512_bf16" in flags:
        per_cycle["bf16"] = 2 * lanes * 2 * 2
    if ghz is None:
        return {"clock_ghz": None, "simd_bits": bits, "gops": None}
    return {
        "clock_ghz": ghz,
        "simd_bits": bits,
        "cores": cores,
        "gops": {p: ops * ghz * cores for p, ops in per_cycle.items()},
    }
