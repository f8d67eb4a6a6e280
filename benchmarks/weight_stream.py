"""How fast this machine streams weights through onnxruntime (not part of CI).

One MatMul, M rows x a constant [K, N] weight too large for the caches, FP32 and dynamic INT8
(onnxruntime's own quantizer), at M = 1 (a decoding step, a one-token stream) and M = 8 (a chunk
of 8): the median time per call and the weight bytes read per second. A model's per-token cost
is weight-bound when it reads its weights at about this rate.

    python benchmarks/weight_stream.py [--rows 1,8] [--threads 2]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

K, N = 8192, 16384  # 512 MB FP32, 128 MB INT8


def median_ms(session: ort.InferenceSession, x: np.ndarray, runs: int) -> float:
    for _ in range(3):
        session.run(None, {"x": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1,8", help="comma list of M")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    weight = (np.random.default_rng(0).standard_normal((K, N)) * 0.02).astype(np.float32)
    out: dict = {"cpu": platform.processor() or platform.machine(), "k": K, "n": N}
    with tempfile.TemporaryDirectory() as tmp:
        for m in (int(r) for r in args.rows.split(",")):
            fp32, int8 = Path(tmp) / f"mm{m}.onnx", Path(tmp) / f"mm{m}-int8.onnx"
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["x", "w"], ["y"])],
                "weight_stream",
                [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, K])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, N])],
                [numpy_helper.from_array(weight, "w")],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            onnx.save(model, fp32, save_as_external_data=True, location=f"mm{m}.data")
            quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
            x = np.random.default_rng(1).standard_normal((m, K)).astype(np.float32)
            for name, path, width in (("fp32", fp32, 4), ("int8", int8, 1)):
                session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                ms = median_ms(session, x, args.runs)
                out[f"{name}_m{m}"] = {"ms": round(ms, 2), "gb_per_s": K * N * width / ms / 1e6}
    out["load"] = os.getloadavg()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
