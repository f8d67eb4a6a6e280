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
    quantize_dynamic(paths["fp32"], paths["int8"], per_channel=True, weight_type=QuantType.QInt8)
    return {v: paths[v] for v in ("fp32", "fp16", "int8")}


def _time(path: Path, dtype: str, m: int, k: int, threads: int, seconds: float):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = (
        np.random.default_rng(1)
        .standard_normal((m, k))
        .astype(np.float16 if dtype == "fp16" else np.float32)
    )
    for _ in range(2):
        session.run(None, {"x": x})
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        t0 = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2], len(times)


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
    medians: dict[str, tuple[float, int, str | None]] = {}
    with tempfile.TemporaryDirectory(prefix="guard-verify-") as tmp:
        paths = _models(m, k, n, Path(tmp))
        for variant, path in paths.items():
            try:
                median, runs = _time(path, variant, m, k, threads, seconds)
                medians[variant] = (median, runs, None)
            except Exception as exc:  # a runtime without an FP16 MatMul kernel, say
                medians[variant] = (float("nan"), 0, f"{type(exc).__name__}: {exc}")
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
