"""The per-row activation quantizer of guard's INT8 graphs, its two forms side by side: one
QuantizeLinear in blocks the width of a row (opset 21, what `guard quantize` writes since 0.5.0)
against Div, Round, Add and Cast (0.4.0's form). Each graph holds 20 quantizers of one input,
run without graph optimizations (which would merge identical quantizers), interleaved.

    python benchmarks/int8_quantizer.py --rows 1,8,177,384 --width 1024,3072

Prints one JSON line per shape on stdout: milliseconds per quantizer, each form, and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from guardcli.runtime.int8_graph import BLOCKED_OPSET, _per_row_nodes

COPIES = 20


def session(width: int, one_pass: bool, threads: int):
    opset = BLOCKED_OPSET if one_pass else 17
    nodes, outputs = [], []
    for i in range(COPIES):
        nodes += _per_row_nodes(
            onnx, "x", f"q{i}", f"s{i}", f"zp{i}", f"p{i}", opset, width if one_pass else None
        )
        outputs.append(helper.make_tensor_value_info(f"q{i}", TensorProto.UINT8, None))
    graph = helper.make_graph(
        nodes, "q", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["r", width])], outputs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="1,8,177,384")
    ap.add_argument("--width", default="1024,3072")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    for width in (int(w) for w in args.width.split(",")):
        sessions = {
            form: session(width, form == "one_pass", args.threads)
            for form in ("one_pass", "four_ops")
        }
        for rows in (int(r) for r in args.rows.split(",")):
            x = (np.random.default_rng(0).standard_normal((rows, width)) * 3).astype(np.float32)
            out = {form: s.run(None, {"x": x}) for form, s in sessions.items()}
            same = all(
                np.array_equal(a, b) for a, b in zip(out["one_pass"], out["four_ops"], strict=True)
            )
            times: dict[str, list[float]] = {form: [] for form in sessions}
            for _ in range(args.rounds):
                for form, s in sessions.items():
                    t = time.perf_counter()
                    s.run(None, {"x": x})
                    times[form].append((time.perf_counter() - t) / COPIES * 1e3)
            ms = {form: float(np.median(t)) for form, t in times.items()}
            print(
                json.dumps(
                    {
                        "rows": rows,
                        "width": width,
                        "one_pass_ms": round(ms["one_pass"], 4),
                        "four_ops_ms": round(ms["four_ops"], 4),
                        "speed_up": round(ms["four_ops"] / ms["one_pass"], 2),
                        "same_bytes": same,
                    }
                )
            )


if __name__ == "__main__":
    main()
