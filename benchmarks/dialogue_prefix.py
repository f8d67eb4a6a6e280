"""Dialogue-intent classifier: whole prompts vs the task-description prefix's KV reused.

Builds once (into MODEL_DIR, minutes) a random-weight Qwen3ForSequenceClassification at
Qwen3-0.6B's dimensions (the real intent_safety_clf_4b is a Qwen3-4B: 16 GB in FP32, more than
a shared 24 GB machine holds twice; the ratio depends on the token counts, not the width), with
its ONNX graphs and the KV graphs (families.dialogue.KV_GRAPHS), and a neutral task description
of --prefix tokens. Times `classify` on contexts of --context tokens at batch 1 and 4, both
paths interleaved in one run, and prints max |Δ score| between them.

    python benchmarks/dialogue_prefix.py MODEL_DIR [--variant int8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from guardcli.core.synthetic import SYNTHETIC_MARKER
from guardcli.core.verdicts import Record
from guardcli.families import dialogue
from guardcli.families.dialogue import synthetic
from guardcli.families.loader import load_guard
from guardcli.runtime.synthetic import EncoderDims

QWEN3_06B = EncoderDims(1024, 28, 16, 8, 128, 3072, 0)
WORDS = "lighthouse garden recipe bicycle river morning teacup violin meadow lantern".split()


def build(out: Path, prefix_tokens: int) -> None:
    if not (out / SYNTHETIC_MARKER).exists():
        synthetic.INTENT_DIMS["full"] = QWEN3_06B
        synthetic.synth_intent_ctx(
            out, size="full", variants=("fp32", "int8"), log=lambda m: print(m, file=sys.stderr)
        )
    guard = load_guard(out, variant="fp32")
    tok = guard.tokenizer.tokenizer
    words: list[str] = []
    while len(tok.encode(dialogue.guard.model_prefix(" ".join(words))).ids) < prefix_tokens:
        words.append(WORDS[len(words) % len(WORDS)])
    (out / dialogue.DIALOGUE_MARKER).write_text(" ".join(words) + "\n", encoding="utf-8")


def contexts(guard, n: int, tokens: int) -> list[dict]:
    out = []
    for i in range(n):
        words = [WORDS[(i * 3 + k) % len(WORDS)] for k in range(tokens)]
        while len(guard.tokenizer.tokenizer.encode(" ".join(words)).ids) > tokens - 3:
            words.pop()
        out.append({"messages": [{"role": "user", "content": " ".join(words)}]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--prefix", type=int, default=300)
    ap.add_argument("--context", type=int, default=400)
    ap.add_argument("--records", type=int, default=8)
    args = ap.parse_args()
    build(args.model, args.prefix)

    reused = load_guard(args.model, variant=args.variant)
    whole = load_guard(args.model, variant=args.variant)
    whole.__dict__["prefix_lm"] = None
    records = contexts(reused, args.records, args.context)
    rendered = [reused.render(Record(i, messages=r["messages"])) for i, r in enumerate(records)]
    lengths = [len(e.ids) for e in reused.tokenizer.encode(rendered)]
    head = reused.prefix_lm.prefixes[0]
    print(
        f"{args.variant}: prefix {len(head) + 1} tokens, prompts {min(lengths)}-{max(lengths)} "
        f"tokens, {len(records)} records",
        file=sys.stderr,
    )
    for guard in (reused, whole):
        guard.classify(records[:1])  # warm-up (and the prefix's KV)
    for batch in (1, 4):
        times: dict[str, list[float]] = {"whole prompt": [], "prefix reused": []}
        scores: dict[str, list[float]] = {"whole prompt": [], "prefix reused": []}
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            for name, guard in (("whole prompt", whole), ("prefix reused", reused)):
                t = time.perf_counter()
                scores[name] += [v.score for v in guard.classify(chunk)]
                times[name].append((time.perf_counter() - t) / len(chunk))
        a, b = (statistics.median(times[k]) for k in ("whole prompt", "prefix reused"))
        diff = np.abs(np.array(scores["whole prompt"]) - np.array(scores["prefix reused"])).max()
        print(
            f"batch {batch}: whole prompt {a * 1000:.0f} ms/record, prefix reused "
            f"{b * 1000:.0f} ms/record: {a / b:.2f}x; max |Δ score| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
