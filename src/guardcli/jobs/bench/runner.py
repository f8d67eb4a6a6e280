"""Interleaved side-by-side timing of model variants on this machine.

Each variant runs in a worker process of its own (`bench_worker.py`), loaded once and warmed up.
The parent then hands out time slices in rounds, A B C, B C A, C A B, ..., one worker at a time,
so slow drift of the machine (thermal, other tenants) falls on every variant alike instead of on
whichever ran last. Every batch goes through the real classify path (render, tokenize, bucket,
pad, model, postprocess); the model call the family names (`Guard.runtime_calls`: an onnxruntime
session, greedy generation, a torch forward pass) is timed separately, which gives the
model-only figures (`prompts_per_s`, `tokens_per_s`, latencies) and the end-to-end ones
(`e2e_*`). A family with several ways to run (qwen3guard-gen: generation and score mode) gets
rows of each `mode`, from the same loaded model.
With real prompts of mixed lengths, every variant walks them in the same order from the start;
a faster variant gets further through them in the same time, which evens out over a long run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from guardcli.core.errors import ExitCode, GuardError, input_error
from guardcli.core.synthetic import is_synthetic
from guardcli.jobs.bench.duplicates import DEFINITIONS as CACHE_DEFINITIONS
from guardcli.jobs.bench.duplicates import add_cache_columns
from guardcli.jobs.bench.inputs import (  # noqa: F401 (re-exported)
    _WORDS,
    machine_info,
    read_prompts,
    synthetic_prompts,
    weights_size,
)
from guardcli.jobs.bench.limits import add_limits
from guardcli.jobs.bench.plan import (  # noqa: F401 (re-exported)
    AGREEMENT_PROMPTS,
    BENCH_VARIANTS,
    DEFAULT_BATCH_SIZES,
    DEFAULT_DURATION,
    DEFAULT_SEQ_LEN,
    MAX_ROUNDS,
    MIN_SLICE_S,
    TORCH_PATHS,
    BenchConfig,
    _on_torch,
    family_modes,
    guard_spec,
    load_options,
    model_variants,
    parse_batch_sizes,
    parse_list,
    parse_modes,
    parse_variants,
    runtime_of,
    without_emulated,
)
from guardcli.jobs.bench.report import DEFINITIONS, add_agreement, add_ratios, make_row

# ---------------------------------------------------------------- workers


class _WorkerProcess:
    """The parent's handle on one `bench_worker` process."""

    def __init__(self, variant: str):
        self.variant = variant
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self.log: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guardcli.jobs.bench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
        )

    def ask(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        reply = json.loads(line) if line else {"ok": False, "error": self._stderr_tail()}
        if not reply.get("ok"):
            raise GuardError(
                f"Benchmark worker for {self.variant} failed: {reply.get('error')}",
                hint="Rerun with fewer variants or smaller batches; GUARD_DEBUG=1 shows more.",
                code=ExitCode.MODEL,
            )
        return reply

    def _stderr_tail(self) -> str:
        self.proc.wait(timeout=10)
        self.log.seek(0)
        tail = self.log.read().decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"exit code {self.proc.returncode}: " + (" | ".join(tail) or "no output")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self.log.close()


# ---------------------------------------------------------------- run


def rounds_for(duration: float) -> int:
    """Enough rounds for drift to cancel, each slice long enough to hold a few batches."""
    return max(1, min(MAX_ROUNDS, int(duration / MIN_SLICE_S)))


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda _: None) -> dict:
    """Benchmark `config.variants` x `config.batch_sizes` (x the family's modes); the JSON-ready
    report."""
    from guardcli.families.loader import load_guard

    model_dir = Path(config.model_dir)
    variants = list(config.variants)
    # Guards that are not loaded (no session, no torch model): files, tokenizer and defaults.
    guards = {v: load_guard(guard_spec(model_dir, v, config.dtype)) for v in variants}
    first = guards[variants[0]]
    modes: list[str | None] = [
        *parse_modes(",".join(config.modes) if config.modes else None, first.modes, first.family)
    ] or [None]
    default_len = first.max_length
    if config.data is not None:
        texts = read_prompts(config.data)
        max_length = default_len
        prompt_source: dict[str, Any] = {"data": str(config.data), "prompts": len(texts)}
    else:
        seq_len = config.seq_len or DEFAULT_SEQ_LEN
        if seq_len < 2:
            raise input_error("--seq-len must be at least 2 (one word and the end token).")
        max_length = max(default_len, seq_len)
        tokenizer = load_guard(guard_spec(model_dir, variants[0], max_length=max_length)).tokenizer
        count = max(64, 2 * max(config.batch_sizes))
        texts = synthetic_prompts(tokenizer, seq_len, count, config.seed)
        prompt_source = {"seq_len": seq_len, "prompts": len(texts)}

    rounds = rounds_for(config.duration)
    workers: dict[str, _WorkerProcess] = {}
    setup: dict[str, dict[str, Any]] = {}
    batches: dict[tuple[str, str | None, int], list[list[float]]] = {}
    cached_batches: dict[tuple[str, str | None, int], list[list[float]]] = {}
    conditions = (False, True) if config.duplicates else (False,)
    try:
        for variant in variants:  # one at a time, so load times do not contend
            progress(f"loading {variant}")
            workers[variant] = _WorkerProcess(variant)
            setup[variant] = workers[variant].ask(
                cmd="setup",
                variant=variant,
                spec=guard_spec(
                    model_dir, variant, config.dtype, max_length=max_length, threads=config.threads
                ).to_json(),
                texts=texts,
                warmup=list(config.batch_sizes),
                modes=modes,
                agreement=config.agreement_prompts,
                duplicates=config.duplicates,
            )
        slice_s = config.duration / rounds
        order = list(variants)
        for r in range(rounds):
            for size in config.batch_sizes:
                for mode in modes:
                    for variant in order:
                        what = f"{variant} ({mode})" if mode else variant
                        progress(f"round {r + 1}/{rounds}: {what} at batch {size}")
                        for cached in conditions:
                            got = workers[variant].ask(
                                cmd="run",
                                batch_size=size,
                                seconds=slice_s,
                                mode=mode,
                                cached=cached,
                            )
                            key = (variant, mode, size)
                            (cached_batches if cached else batches).setdefault(key, []).extend(
                                got["batches"]
                            )
                    order = order[1:] + order[:1]  # A B C, then B C A: no variant always last
        peaks = {v: w.ask(cmd="stop").get("peak_rss_mb") for v, w in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()

    sizes = {v: weights_size(g.weight_files()) for v, g in guards.items()}
    rows = [
        make_row(
            v,
            runtime_of(v),
            m,
            b,
            batches[(v, m, b)],
            setup[v],
            peaks[v],
            sizes[v],
            config.price_per_hour,
        )
        for b in config.batch_sizes
        for m in modes
        for v in variants
    ]
    if config.duplicates:
        for row in rows:
            key = (row["variant"], row["mode"], row["batch_size"])
            identical = setup[row["variant"]].get("cache_identical", {}).get(row["mode"] or "")
            add_cache_columns(row, cached_batches[key], identical)
    add_ratios(rows, sizes)
    add_agreement(rows, variants[0], {v: s["agreement"] for v, s in setup.items()})
    machine = machine_info(config.threads)
    versions = next(iter(setup.values()))
    for runtime in ("onnxruntime", "openvino"):
        machine[runtime] = versions.get(runtime) or machine[runtime]
    if any(v in TORCH_PATHS for v in variants):
        machine["torch"] = versions.get("torch")
    report = {
        "machine": machine,
        "model": {
            "path": str(model_dir),
            "family": first.family,
            "synthetic": is_synthetic(model_dir),
            "max_length": max_length,
            **config.extra,
        },
        "settings": {
            "variants": variants,
            "modes": [m for m in modes if m],
            "reference": variants[0],
            "batch_sizes": list(config.batch_sizes),
            "duration_s": config.duration,
            "rounds": rounds,
            "price_per_hour": config.price_per_hour,
            "agreement_prompts": config.agreement_prompts,
            "duplicates": config.duplicates,
            **prompt_source,
        },
        "results": rows,
        "definitions": {**DEFINITIONS, **(CACHE_DEFINITIONS if config.duplicates else {})},
    }
    if config.limits:
        progress("measuring this machine's GEMM limits on the model's shapes")
        try:
            add_limits(report, model_dir, config.threads)
        except GuardError:
            raise
        except Exception as exc:  # the timings stand without it; say why it is missing
            report["limits"] = {"error": f"could not measure: {type(exc).__name__}: {exc}"}
    return report
