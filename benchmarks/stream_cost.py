"""Per-token cost of streaming moderation with Qwen3Guard-Stream (KV cache kept between chunks).

For each variant (FP32 and per-row INT8 ONNX) and context length (128 and 4,096 tokens already
judged), prefill the context once, then feed answer tokens in chunks of 1, 8 and 16 on that
cache and time every call: p50 per token = p50 call time / k. The prefill time is also what the
shipped `stream_moderate_from_ids` loop pays for every token (it re-feeds the whole sequence).
Agreement: the per-token risk argmax of each variant against the PyTorch reference (FP32) on
the 128-token context run.

Build the model first (minutes, ~4 GB on disk):

    guard synth qwen3guard-stream --size full --out /tmp/qs_full
    python -c "from guardcli.families.qwen3guard_stream.export import quantize_folder as q; \
q('/tmp/qs_full')"
    python benchmarks/stream_cost.py /tmp/qs_full [--contexts 128,4096] [--chunks 1,8,16]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np

from guardcli.families.qwen3guard_stream.export import FP32_GRAPH, INT8_GRAPH
from guardcli.families.qwen3guard_stream.runners import OnnxRunner, TorchRunner

PREFILL_PIECE = 512  # the context is prefilled in pieces (eager attention's score matrix)


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def prefill(runner, ids: list[int]) -> float:
    runner.reset()
    start = time.perf_counter()
    for i in range(0, len(ids), PREFILL_PIECE):
        runner.feed(ids[i : i + PREFILL_PIECE])
    return time.perf_counter() - start


def timed_chunks(runner, answer: list[int], k: int) -> tuple[list[float], np.ndarray]:
    times, risks = [], []
    for i in range(0, len(answer) - k + 1, k):
        start = time.perf_counter()
        risk, _, _, _ = runner.feed(answer[i : i + k])
        times.append((time.perf_counter() - start) / k)
        risks.append(risk)
    return times, np.concatenate(risks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--contexts", default="128,4096")
    ap.add_argument("--chunks", default="1,8,16")
    ap.add_argument("--tokens", type=int, default=48, help="answer tokens timed per chunk size")
    ap.add_argument("--variants", default="fp32,int8")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/stream_cost.json"))
    args = ap.parse_args()
    contexts = [int(c) for c in args.contexts.split(",")]
    chunks = [int(c) for c in args.chunks.split(",")]
    rng = random.Random(0)
    # Ordinary-text token ids (below the added tokens); the verdicts of random weights are noise.
    context_ids = [rng.randrange(100, 150_000) for _ in range(max(contexts))]
    answer = [rng.randrange(100, 150_000) for _ in range(args.tokens)]
    graphs = {"fp32": FP32_GRAPH, "int8": INT8_GRAPH}
    rows = []
    reference = TorchRunner(args.model, threads=args.threads)
    prefill(reference, context_ids[: contexts[0]])
    ref_logits = reference.feed(answer)[0]
    ref_risk = ref_logits.argmax(-1)
    del reference
    for variant in args.variants.split(","):
        runner = OnnxRunner(args.model / graphs[variant], threads=args.threads)
        runner.feed([1, 2, 3])  # warm-up
        for n in contexts:
            t_prefill = prefill(runner, context_ids[:n])
            saved = (list(runner.past), runner.length)
            for k in chunks:
                runner.past, runner.length = list(saved[0]), saved[1]
                times, risks = timed_chunks(runner, answer, k)
                row = {
                    "variant": variant,
                    "context": n,
                    "chunk": k,
                    "p50_ms_per_token": round(1e3 * statistics.median(times), 2),
                    "tokens_per_s": round(1 / statistics.median(times), 1),
                    "prefill_s": round(t_prefill, 2),
                    "refeed_ms_per_token": round(1e3 * t_prefill, 1),
                }
                if n == contexts[0]:
                    m = len(risks)
                    row["agreement_with_reference"] = float(
                        np.mean(risks.argmax(-1) == ref_risk[:m])
                    )
                    row["max_abs_dlogit"] = float(np.abs(risks - ref_logits[:m]).max())
                rows.append(row)
                print(json.dumps(row), flush=True)
    for variant in args.variants.split(","):
        for k in chunks:
            by = {r["context"]: r for r in rows if r["variant"] == variant and r["chunk"] == k}
            lo, hi = by[contexts[0]], by[contexts[-1]]
            ratio = hi["p50_ms_per_token"] / lo["p50_ms_per_token"]
            print(
                f"{variant} chunk {k}: p50/token {lo['p50_ms_per_token']} ms at {contexts[0]}, "
                f"{hi['p50_ms_per_token']} ms at {contexts[-1]} ({ratio:.2f}x)"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_name(), "rows": rows}, indent=2) + "\n")
    print("cpu:", cpu_name())


if __name__ == "__main__":
    main()
