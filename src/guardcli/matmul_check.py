"""`guard probe-cpu --verify`: time FP32, FP16 and INT8 MatMuls of CSAM-Guard's shapes with
onnxruntime on this CPU, so the recommendation comes with evidence.

Each variant is a one-node ONNX graph built with the `onnx` helper API: activations [M, K] times
a constant weight [K, N]. INT8 is the FP32 graph passed through onnxruntime's `quantize_dynamic`
(per-channel QInt8 weights, dynamic activation quantization), the recipe of the real INT8 file.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GuardError, missing_extra

# batch 8 x ~48-token prompts, hidden 1024 -> intermediate 3072 (Qwen3-0.6B's up/gate_proj)
DEFAULT_SHAPE = (8 * 48, 1024, 3072)
SECONDS_PER_VARIANT = 1.0


@dataclass(frozen=True)
class MatMulTiming:
    variant: str
    ms: float  # median milliseconds per MatMul
    gflops: float
    ratio: float  # throughput relative to FP32 (>1 is faster)
    runs: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "ms": round(self.ms, 3),
            "gflops": round(self.gflops, 1),
            "ratio_vs_fp32": round(self.ratio, 2),
            "runs": self.runs,
            "error": self.error,
        }


def _graph(dtype: str, m: int, k: int, n: int, seed: int = 0):
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    elem = {"fp32": TensorProto.FLOAT, "fp16": TensorProto.FLOAT16}[dtype]
    np_dtype = np.float32 if dtype == "fp32" else np.float16
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((k, n)) * 0.02).astype(np_dtype)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="up_proj/MatMul")
    graph = helper.make_graph(
        [node],
        f"matmul_{dtype}",
        [helper.make_tensor_value_info("x", elem, [m, k])],
        [helper.make_tensor_value_info("y", elem, [m, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _models(m: int, k: int, n: int, workdir: Path) -> dict[str, Path]:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    paths = {}
    for dtype in ("fp32", "fp16"):
        paths[dtype] = workdir / f"matmul_{dtype}.onnx"
        onnx.save(_graph(dtype, m, k, n), paths[dtype])
    paths["int8"] = workdir / "matmul_int8.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic advises pre-processing on the root logger
    try:
        quantize_dynamic(
            paths["fp32"], paths["int8"], per_channel=True, weight_type=QuantType.QInt8
        )
    finally:
        root.setLevel(level)
    return {v: paths[v] for v in ("fp32", "fp16", "int8")}


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _interleaved(runners: dict, seconds: float) -> dict[str, list[float]]:
    """Run each variant once per round, round after round, so that drift in clock speed or
    load on a shared host hits every variant alike."""
    for run in runners.values():
        run()
        run()
    times: dict[str, list[float]] = {v: [] for v in runners}
    deadline = time.perf_counter() + seconds * len(runners)
    while time.perf_counter() < deadline or min(len(t) for t in times.values()) < 3:
        for variant, run in runners.items():
            t0 = time.perf_counter()
            run()
            times[variant].append(time.perf_counter() - t0)
    return times


def verify(
    shape: tuple[int, int, int] = DEFAULT_SHAPE,
    *,
    threads: int | None = None,
    seconds_per_variant: float | None = None,
) -> list[MatMulTiming]:
    """Median time of one [M,K]x[K,N] MatMul per variant, and its throughput relative to FP32."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise missing_extra("export", "`guard probe-cpu --verify`") from exc
    from .cpu import usable_cpus

    m, k, n = shape
    seconds = seconds_per_variant or SECONDS_PER_VARIANT
    threads = threads or usable_cpus()
    flops = 2.0 * m * k * n
    import numpy as np

    medians: dict[str, tuple[float, int, str | None]] = {}
    runners = {}
    with tempfile.TemporaryDirectory(prefix="guard-verify-") as tmp:
        for variant, path in _models(m, k, n, Path(tmp)).items():
            x = np.random.default_rng(1).standard_normal((m, k))
            feed = {"x": x.astype(np.float16 if variant == "fp16" else np.float32)}
            try:  # a runtime without an FP16 MatMul kernel fails here
                session = _session(path, threads)
                session.run(None, feed)
            except Exception as exc:
                medians[variant] = (float("nan"), 0, f"{type(exc).__name__}: {exc}")
                continue
            runners[variant] = lambda s=session, f=feed: s.run(None, f)
        for variant, times in _interleaved(runners, seconds).items():
            times.sort()
            medians[variant] = (times[len(times) // 2], len(times), None)
    medians = {v: medians[v] for v in ("fp32", "fp16", "int8")}
    base = medians["fp32"][0]
    if base != base:  # NaN: FP32 itself failed
        raise GuardError(f"onnxruntime could not run an FP32 MatMul: {medians['fp32'][2]}")
    return [
        MatMulTiming(
            variant=v,
            ms=s * 1e3,
            gflops=flops / s / 1e9 if s == s else float("nan"),
            ratio=base / s if s == s else float("nan"),
            runs=runs,
            error=err,
        )
        for v, (s, runs, err) in medians.items()
    ]
