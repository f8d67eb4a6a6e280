"""guard's ONNX path against PyTorch transformers FP32 and BF16, same model, same prompts.

Not part of CI. The model is the synthetic CSAM-Guard (random weights, real architecture): the
ONNX variants come from `guard synth` (cached), the PyTorch module is rebuilt from the same seed,
so both sides hold identical weights; the script checks that before timing. Paths run
interleaved in rounds (A B C D, B C D A, ...) so machine drift falls on all of them alike.

    python benchmarks/compare_torch.py --size full --batch-size 1,8 --duration 20 --json out.json

Every path gets the same token ids from the model's own fast tokenizer; the figures are model
time only (tokenization is the same for all paths and measured by `guard bench` as e2e).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import numpy as np

from guardcli.core.batching import pad
from guardcli.core.tokenize import TextTokenizer
from guardcli.families.seqcls.synthetic import build_csam_guard_module
from guardcli.jobs.bench.report import percentile
from guardcli.jobs.bench.runner import machine_info, synthetic_prompts
from guardcli.jobs.synthetic import synthetic_model
from guardcli.runtime.onnx_session import OnnxSession

PATHS = ("onnx-fp32", "onnx-int8", "torch-fp32", "torch-bf16")
GRAPHS = {"onnx-fp32": "onnx/model.onnx", "onnx-int8": "onnx/model_quantized.onnx"}

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]


def torch_runner(module, dtype) -> Runner:
    import torch

    model = module.to(dtype)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(ids), torch.from_numpy(mask))
        return out.float().numpy()

    return run


def build_runners(paths: list[str], size: str, threads: int) -> tuple[dict[str, Runner], dict]:
    import torch

    torch.set_num_threads(threads)
    model_dir = synthetic_model(size)
    runners: dict[str, Runner] = {}
    load_s: dict[str, float] = {}
    for path in paths:
        start = time.perf_counter()
        if path in GRAPHS:
            runners[path] = OnnxSession(model_dir / GRAPHS[path], threads=threads).run
        else:
            dtype = torch.bfloat16 if path == "torch-bf16" else torch.float32
            runners[path] = torch_runner(build_csam_guard_module(size, seed=0), dtype)
        load_s[path] = time.perf_counter() - start
    return runners, {"model_dir": str(model_dir), "load_s": load_s}


def check_same_weights(runners: dict[str, Runner], ids: np.ndarray, mask: np.ndarray) -> dict:
    """Max |logit difference| of each path against ONNX FP32 (or torch FP32): a large FP32 gap
    would mean the two sides do not hold the same model."""
    ref_name = next((p for p in ("onnx-fp32", "torch-fp32") if p in runners), None)
    if ref_name is None:
        return {}
    ref = runners[ref_name](ids, mask)
    return {p: float(np.abs(r(ids, mask) - ref).max()) for p, r in runners.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=("tiny", "full"), default="full")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--batch-size", default="1,8")
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per path x batch")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)

    machine = machine_info(args.threads)
    threads = machine["threads"]
    paths = [p for p in args.paths.split(",") if p]
    sizes = [int(b) for b in args.batch_size.split(",")]
    runners, info = build_runners(paths, args.size, threads)
    tokenizer = TextTokenizer(info["model_dir"], max(384, args.seq_len))
    texts = synthetic_prompts(tokenizer, args.seq_len, max(64, 2 * max(sizes)))
    encoded = [e.ids for e in tokenizer.encode(texts)]
    ids, mask = pad(encoded[:2], tokenizer.pad_id)
    parity = check_same_weights(runners, ids, mask)
    print(f"max |logit - reference|: {parity}", file=sys.stderr)

    samples: dict[tuple[str, int], list[tuple[int, int, float]]] = {}
    cursor = 0
    for size in sizes:  # warm-up: one batch of each size on each path
        ids, mask = pad(encoded[:size], tokenizer.pad_id)
        for run in runners.values():
            run(ids, mask)
    order = list(paths)
    slice_s = args.duration / args.rounds
    for r in range(args.rounds):
        for size in sizes:
            for path in order:
                print(f"round {r + 1}/{args.rounds}: {path} at batch {size}", file=sys.stderr)
                deadline = time.perf_counter() + slice_s
                got = samples.setdefault((path, size), [])
                first = True
                while first or time.perf_counter() < deadline:
                    first = False
                    batch = [encoded[(cursor + i) % len(encoded)] for i in range(size)]
                    cursor = (cursor + size) % len(encoded)
                    ids, mask = pad(batch, tokenizer.pad_id)
                    t0 = time.perf_counter()
                    runners[path](ids, mask)
                    got.append((size, int(mask.sum()), time.perf_counter() - t0))
            order = order[1:] + order[:1]

    rows = []
    for size in sizes:
        base = None
        for path in paths:
            s = samples[(path, size)]
            seconds = sum(x[2] for x in s)
            row = {
                "path": path,
                "batch_size": size,
                "prompts_per_s": sum(x[0] for x in s) / seconds,
                "tokens_per_s": sum(x[1] for x in s) / seconds,
                "batch_p50_ms": percentile([1000 * x[2] for x in s], 50),
                "batches": len(s),
                "load_s": info["load_s"][path],
                "max_abs_logit_diff": parity.get(path),
            }
            base = base or (row if path in ("onnx-fp32", "torch-fp32") else None)
            row["ratio_to_fp32"] = row["prompts_per_s"] / base["prompts_per_s"] if base else None
            rows.append(row)

    head = f"{'path':<12}{'batch':>6}{'prompts/s':>11}{'tokens/s':>10}{'×fp32':>8}"
    print(f"{machine['cpu_model']}, {threads} threads, size={args.size}, seq_len={args.seq_len}")
    print(f"{head}{'batch p50 ms':>14}{'batches':>9}")
    for row in rows:
        ratio = "-" if row["ratio_to_fp32"] is None else f"{row['ratio_to_fp32']:.2f}"
        print(
            f"{row['path']:<12}{row['batch_size']:>6}{row['prompts_per_s']:>11.2f}"
            f"{row['tokens_per_s']:>10.0f}{ratio:>8}{row['batch_p50_ms']:>14.1f}"
            f"{row['batches']:>9}"
        )
    if args.json_out:
        report = {
            "machine": machine,
            "python": platform.python_version(),
            "settings": vars(args),
            "model": info["model_dir"],
            "results": rows,
        }
        with open(args.json_out, "w") as handle:
            json.dump(report, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
