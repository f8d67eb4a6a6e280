"""Qwen3Guard-Gen on ONNX: score mode per prompt (old and new head in one run) and decode speed.

Score mode: batch 1, rendered prompts of --tokens tokens whose template head (~200 tokens) is
reused from its cached KV, p50 per prompt with the full-vocabulary head (the old path) and with
the head restricted to the three severity tokens (runtime.score_head), interleaved so both see
the same load; max |Δ probability| between them.
Decode: greedy tokens/s after the prefill (time of N new tokens minus time of 1, over N - 1),
twice.

    python benchmarks/score_decode.py MODEL_DIR [--graph onnx/model_quantized.onnx]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from guardcli.core.verdicts import Record
from guardcli.families.loader import load_guard
from guardcli.families.qwen3guard_gen import format as fmt
from guardcli.runtime.causal_lm import OnnxCausalLM

WORDS = "lighthouse garden recipe bicycle river morning teacup violin meadow lantern".split()


def prompts_of(guard, n: int, tokens: int) -> list[list[int]]:
    """`n` rendered prompt-moderation inputs of exactly `tokens` tokens (neutral words)."""
    out = []
    for i in range(n):
        words = [WORDS[(i + k) % len(WORDS)] for k in range(tokens)]
        while True:
            ids = guard.tokenizer.encode([guard.render(Record(i, " ".join(words)))])[0].ids
            if len(ids) <= tokens or len(words) <= 1:
                break
            words.pop()
        out.append(ids)
    return out


def probabilities(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(np.float64)
    e = np.exp(rows - rows.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--graph", default="onnx/model_quantized.onnx")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=377)
    ap.add_argument("--new-tokens", type=int, default=32)
    args = ap.parse_args()

    guard = load_guard(args.model, backend="onnxruntime", generate=False)
    graph = args.model / args.graph
    heads = fmt.template_heads(lambda t: guard.tokenizer.encode([t])[0].ids, guard.template)
    lm = OnnxCausalLM(graph, args.model, threads=guard.threads, prefixes=heads)
    suffix, firsts = guard.score_ids
    ids = list(firsts.values())
    prompts = prompts_of(guard, args.prompts, args.tokens)
    head = lm.shared_prefix(prompts)
    print(
        f"{graph.name}: {len(prompts)} prompts of "
        f"{min(map(len, prompts))}-{max(map(len, prompts))} tokens "
        f"(+{len(suffix)} score suffix), template head {len(head or ())} tokens reused",
        file=sys.stderr,
    )
    scored = [p + suffix for p in prompts]
    lm.score_logits(scored[:1], ids, own_head=True)  # warm-up: both sessions, the head's KV
    lm.score_logits(scored[:1], ids, own_head=False)
    times: dict[bool, list[float]] = {False: [], True: []}
    rows: dict[bool, list[np.ndarray]] = {False: [], True: []}
    for p in scored:
        for own in (False, True):
            t = time.perf_counter()
            rows[own].append(lm.score_logits([p], ids, own_head=own)[0])
            times[own].append(time.perf_counter() - t)
    diff = np.abs(probabilities(np.array(rows[True])) - probabilities(np.array(rows[False])))
    for own, name in ((False, "full-vocabulary head"), (True, "severity-token head")):
        print(f"score mode, {name}: p50 {statistics.median(times[own]) * 1000:.0f} ms")
    print(f"score mode: max |Δ probability| {diff.max():.2e}")

    n = args.new_tokens
    p = prompts[:1]
    for _ in range(2):
        lm.generate(p, 2)
        t1 = min(_timed(lambda: lm.generate(p, 1)) for _ in range(2))
        start = time.perf_counter()
        out = lm.generate(p, n)
        tn = time.perf_counter() - start
        made = len(out[0])
        print(f"decode: {made} new tokens, {(made - 1) / (tn - t1):.1f} tokens/s after the prefill")


def _timed(call) -> float:
    t = time.perf_counter()
    call()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
