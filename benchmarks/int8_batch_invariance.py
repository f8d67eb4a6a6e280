"""INT8 options for batch invariance, measured side by side in one process (ratios comparable).

    PYTHONPATH=src python benchmarks/int8_batch_invariance.py models/csam-guard-full \
        --duration 10 --batch-sizes 1,8 --seq-len 48 --data data/samples/labelled.jsonl

Options (every one keeps the card's down_proj MatMuls in FP32):
  fp32          onnxruntime FP32 (reference)
  per-tensor    today's dynamic INT8: one activation scale per tensor (per batch)
  per-row       the same weights, activations quantized per row (runtime.int8_rows)
  row-at-a-time the per-tensor graph run one row at a time, no padding
  nbits8-acc4   MatMulNBits 8-bit, block 32, accuracy_level=4 (activations per block of a row);
                needs the `onnx_ir` package (onnxruntime's quantizer imports it)
  ov-int8       OpenVINO + NNCF static INT8 (calibrated on --data)

For each: tokens/s at each batch size (interleaved rounds, --duration seconds in all per option
and batch size), the ratio to per-tensor and to FP32; max |Δscore| between a record scored alone
and in a mixed-length padded batch next to an adversarial record (one rare token repeated);
and agreement with FP32 on --data (same decision at the model's threshold, max |Δscore|).
Writes the option files under MODEL/.int8-options/ (reused when present) and prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from guardcli.core.batching import pad
from guardcli.core.tokenize import TextTokenizer
from guardcli.jobs.bench.runner import machine_info, read_prompts, synthetic_prompts
from guardcli.runtime.int8_rows import quantizes_per_tensor, rewrite_file
from guardcli.runtime.onnx_recipes import int8_excluded_nodes
from guardcli.runtime.onnx_session import OnnxSession, alone

OPTIONS = ("fp32", "per-tensor", "per-row", "row-at-a-time", "nbits8-acc4", "ov-int8")


def build(model: Path, work: Path, options: list[str], data: Path) -> dict[str, Path]:
    work.mkdir(parents=True, exist_ok=True)
    fp32 = model / "onnx" / "model.onnx"
    files = {"fp32": fp32}
    per_tensor = work / "per_tensor" / "model_quantized.onnx"
    if not per_tensor.exists():
        per_tensor.parent.mkdir(parents=True, exist_ok=True)
        published = model / "onnx" / "model_quantized.onnx"
        if quantizes_per_tensor(published):
            for suffix in ("", ".data"):  # the graph names its data file: keep the names
                src = published.with_name(published.name + suffix)
                if src.exists():
                    os.link(src, per_tensor.with_name(per_tensor.name + suffix))
        else:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                str(fp32),
                str(per_tensor),
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=int8_excluded_nodes(fp32, ["down_proj"]),
                use_external_data_format=True,
            )
    files["per-tensor"] = files["row-at-a-time"] = per_tensor
    rows = work / "per_row.onnx"
    if "per-row" in options and not rows.exists():
        rewrite_file(per_tensor, rows)
    files["per-row"] = rows
    nbits = work / "nbits8_acc4.onnx"
    if "nbits8-acc4" in options and not nbits.exists():
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quant = MatMulNBitsQuantizer(
            onnx.load(str(fp32)),
            bits=8,
            block_size=32,
            is_symmetric=True,
            accuracy_level=4,
            nodes_to_exclude=int8_excluded_nodes(fp32, ["down_proj"]),
        )
        quant.process()
        quant.model.save_model_to_file(str(nbits), use_external_data_format=True)
    files["nbits8-acc4"] = nbits
    ov = model / "openvino" / "model_int8.xml"
    if "ov-int8" in options and not ov.exists():
        from guardcli.jobs.convert.openvino_quant import quantize_openvino

        quantize_openvino(model, calibration=data)
    files["ov-int8"] = ov
    return files


class RowAtATime:
    def __init__(self, session: OnnxSession):
        self.session = session

    def run(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.concatenate([self.session.run(*alone(ids, mask, r)) for r in range(len(ids))])


def open_sessions(files: dict[str, Path], options: list[str]) -> dict[str, object]:
    sessions: dict[str, object] = {}
    for name in options:
        if name == "row-at-a-time":
            base = sessions.get("per-tensor") or OnnxSession(files[name], per_row=False)
            sessions[name] = RowAtATime(base)  # type: ignore[arg-type]
        elif name == "ov-int8":
            from guardcli.runtime.openvino_session import OpenVinoSession

            sessions[name] = OpenVinoSession(files[name])
        else:
            sessions[name] = OnnxSession(files[name], per_row=name != "per-tensor")
    return sessions


def scores(session, batch: list[list[int]], pad_id: int) -> np.ndarray:
    ids, mask = pad(batch, pad_id, side="right")
    logits = session.run(ids, mask).astype(np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True))[:, 1]


def throughput(sessions, tok, args) -> dict[str, dict[int, float]]:
    prompts = synthetic_prompts(tok, args.seq_len, 64)
    ids = [e.ids for e in tok.encode(prompts)]
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rounds = 5
    tokens = {n: {b: 0 for b in sizes} for n in sessions}
    seconds = {n: {b: 0.0 for b in sizes} for n in sessions}
    for b in sizes:
        batches = [ids[i : i + b] for i in range(0, len(ids) - b + 1, b)]
        arrays = [pad(x, tok.pad_id, side="right") for x in batches]
        for s in sessions.values():  # warm-up
            s.run(*arrays[0])  # type: ignore[attr-defined]
        for r in range(rounds):
            order = list(sessions)[r % len(sessions) :] + list(sessions)[: r % len(sessions)]
            for name in order:
                s = sessions[name]
                end = time.perf_counter() + args.duration / rounds
                i = 0
                while time.perf_counter() < end:
                    x, m = arrays[i % len(arrays)]
                    start = time.perf_counter()
                    s.run(x, m)  # type: ignore[attr-defined]
                    seconds[name][b] += time.perf_counter() - start
                    tokens[name][b] += int(m.sum())
                    i += 1
    return {n: {b: tokens[n][b] / seconds[n][b] for b in sizes} for n in sessions}


def invariance(sessions, tok) -> dict[str, float]:
    words = "a watercolor of a lighthouse at dawn near the harbour wall".split()
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i)) for i in range(12)]
    batch = [e.ids for e in tok.encode(texts)]
    rare = tok.tokenizer.encode("Ж", add_special_tokens=False).ids[-1]
    adversarial = batch[0][:1] + [rare] * 300
    out = {}
    for name, s in sessions.items():
        solo = np.array([scores(s, [x], tok.pad_id)[0] for x in batch])
        mixed = scores(s, batch, tok.pad_id)
        attacked = scores(s, [adversarial, *batch], tok.pad_id)[1:]
        out[name] = float(max(np.abs(solo - mixed).max(), np.abs(solo - attacked).max()))
    return out


def agreement(sessions, tok, data: Path, threshold: float) -> dict[str, dict[str, float]]:
    enc = [e.ids for e in tok.encode(read_prompts(data))]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    result: dict[str, np.ndarray] = {}
    for name, s in sessions.items():
        got = np.zeros(len(enc))
        for i in range(0, len(order), 8):
            chunk = order[i : i + 8]
            got[chunk] = scores(s, [enc[j] for j in chunk], tok.pad_id)
        result[name] = got
    ref = result["fp32"]
    return {
        n: {
            "same_decision": float(((v >= threshold) == (ref >= threshold)).mean()),
            "max_abs_dscore": float(np.abs(v - ref).max()),
        }
        for n, v in result.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--options", default=",".join(OPTIONS))
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--seq-len", type=int, default=48)
    ap.add_argument("--data", type=Path, default=Path("data/samples/labelled.jsonl"))
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--skip", default="", help="comma list: throughput,invariance,agreement")
    args = ap.parse_args()
    options = [o for o in args.options.split(",") if o]
    if "fp32" not in options:
        options.insert(0, "fp32")
    skip = set(args.skip.split(","))
    files = build(args.model, args.model / ".int8-options", options, args.data)
    sessions = open_sessions(files, options)
    tok = TextTokenizer(args.model, 384)
    report: dict[str, object] = {"machine": machine_info(), "options": options, "args": vars(args)}
    if "throughput" not in skip:
        tps = throughput(sessions, tok, args)
        report["tokens_per_s"] = tps
        report["ratio_to_per_tensor"] = {
            n: {b: v / tps["per-tensor"][b] for b, v in r.items()}
            for n, r in tps.items()
            if "per-tensor" in tps
        }
        report["ratio_to_fp32"] = {
            n: {b: v / tps["fp32"][b] for b, v in r.items()} for n, r in tps.items()
        }
    if "invariance" not in skip:
        report["max_abs_dscore_batched_vs_alone"] = invariance(sessions, tok)
    if "agreement" not in skip:
        report["agreement_with_fp32"] = agreement(sessions, tok, args.data, args.threshold)
    json.dump(report, sys.stdout, indent=1, default=str)
    print()
    shutil.rmtree(args.model / ".int8-options" / "__pycache__", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
