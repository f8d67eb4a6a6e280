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

from guardcli.core.errors import GuardError, missing_extra

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
    best_ms: float = float("nan")  # the fastest of the runs

    def as_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "ms": round(self.ms, 3),
            "gflops": round(self.gflops, 1),
            "ratio_vs_fp32": round(self.ratio, 2),
            "runs": self.runs,
            "best_ms": round(self.best_ms, 3) if self.best_ms == self.best_ms else None,
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
    # Idle onnxruntime threads spin for a while after each run; timed next to OpenVINO in the
    # same process, that spinning would steal its cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
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
    openvino: bool = True,
) -> list[MatMulTiming]:
    """Median time of one [M,K]x[K,N] MatMul per variant, and its throughput relative to FP32.

    With `openvino` (and openvino installed) the OpenVINO paths are timed too: the FP32 graph at
    f32 (ov-fp32) and with the bf16 hint (bf16), and a QDQ INT8 graph (ov-int8)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise missing_extra("export", "`guard probe-cpu --verify`") from exc
    from guardcli.core.cpu import usable_cpus

    m, k, n = shape
    seconds = seconds_per_variant or SECONDS_PER_VARIANT
    threads = threads or usable_cpus()
    flops = 2.0 * m * k * n
    import numpy as np

    medians: dict[str, tuple[float, int, str | None]] = {}
    best: dict[str, float] = {}
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
        order = ["fp32", "fp16", "int8"]
        if openvino:
            for variant, run in openvino_runners(shape, threads, Path(tmp)).items():
                order.append(variant)
                if isinstance(run, Exception):
                    medians[variant] = (float("nan"), 0, f"{type(run).__name__}: {run}")
                else:
                    runners[variant] = run
        for variant, times in _interleaved(runners, seconds).items():
            times.sort()
            medians[variant] = (times[len(times) // 2], len(times), None)
            best[variant] = times[0]
    medians = {v: medians[v] for v in order}
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
            best_ms=best.get(v, float("nan")) * 1e3,
        )
        for v, (s, runs, err) in medians.items()
    ]


# ---------------------------------------------------------------------------- OpenVINO

OPENVINO_PATHS = ("ov-fp32", "bf16", "ov-int8")


def _qdq_graph(m: int, k: int, n: int, seed: int = 0):
    """The FP32 MatMul with QuantizeLinear/DequantizeLinear on activations (u8, per tensor) and
    weights (s8, per output channel): what NNCF's INT8 amounts to, and what OpenVINO's
    low-precision pass turns into an INT8 GEMM."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((k, n)) * 0.02).astype(np.float32)
    w_scale = (np.abs(weight).max(axis=0) / 127).astype(np.float32)
    w_q = np.clip(np.round(weight / w_scale), -127, 127).astype(np.int8)
    inits = [
        numpy_helper.from_array(w_q, "w_q"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(n, np.int8), "w_zero"),
        numpy_helper.from_array(np.array(8.0 / 255, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "x_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"], axis=1),
        helper.make_node("MatMul", ["x_dq", "w_dq"], ["y"], name="up_proj/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "matmul_qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def openvino_runners(shape: tuple[int, int, int], threads: int, workdir: Path) -> dict:
    """One runner per OpenVINO path, or {} without openvino."""
    from guardcli.core.variants import OPENVINO_PRECISION, openvino_available

    if not openvino_available():
        return {}
    import numpy as np
    import onnx
    import openvino as ov

    m, k, n = shape
    fp32, qdq = workdir / "matmul_fp32.onnx", workdir / "matmul_qdq.onnx"
    if not fp32.exists():
        onnx.save(_graph("fp32", m, k, n), fp32)
    onnx.save(_qdq_graph(m, k, n), qdq)
    core = ov.Core()
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    runners: dict[str, Any] = {}  # a callable, or the exception that stopped it
    for variant in OPENVINO_PATHS:
        config: dict[str, object] = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1}
        if (precision := OPENVINO_PRECISION[variant]) is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        path = qdq if variant == "ov-int8" else fp32
        try:
            request = core.compile_model(str(path), "CPU", config).create_infer_request()
            request.infer({"x": x})
        except Exception as exc:  # e.g. a bf16 hint on a CPU that cannot take it
            runners[variant] = exc
            continue
        runners[variant] = lambda r=request: r.infer({"x": x})
    return runners
