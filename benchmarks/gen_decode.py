"""Generate-mode decoding speed of causal LM graphs, side by side in one run (issue 19 item 5).

Each graph decodes a fixed number of greedy tokens (EOS ignored) after one rendered prompt of
about --tokens tokens at batch 1; tokens/s is (new - 1) / (time of `new` tokens - time of 1),
so the prefill cancels. Graphs are measured in turns, --rounds times, so all see the same load;
the median is reported with the tokens each produced (equal tokens = same greedy output).

    python benchmarks/gen_decode.py MODEL_DIR --graph old=DIR/onnx/model.onnx \\
        --graph new=OTHER/onnx/model.onnx [--tokens 400 --new-tokens 64 --rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from guardcli.core.verdicts import Record
from guardcli.families.loader import load_guard
from guardcli.runtime.causal_lm import OnnxCausalLM

WORDS = "lighthouse garden recipe bicycle river morning teacup violin meadow lantern".split()


def prompt_of(guard, tokens: int) -> list[int]:
    """A rendered prompt-moderation input of at most `tokens` tokens (neutral words)."""
    words = [WORDS[k % len(WORDS)] for k in range(tokens)]
    while True:
        ids = guard.tokenizer.encode([guard.render(Record(1, " ".join(words)))])[0].ids
        if len(ids) <= tokens or len(words) <= 1:
            return ids
        words.pop()


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--graph", action="append", required=True, help="NAME=PATH, repeatable")
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    guard = load_guard(args.model, backend="onnxruntime", generate=False)
    prompt = [prompt_of(guard, args.tokens)]
    lms = {}
    for spec in args.graph:
        name, _, path = spec.partition("=")
        lm = OnnxCausalLM(Path(path), args.model, threads=args.threads or guard.threads)
        lm.eos_ids = [-1]  # decode exactly --new-tokens
        lm.generate(prompt, 2)  # load and warm up
        lms[name] = lm
    n = args.new_tokens
    rates: dict[str, list[float]] = {name: [] for name in lms}
    tokens: dict[str, list[int]] = {}
    for _ in range(args.rounds):
        for name, lm in lms.items():
            first = min(timed(lambda lm=lm: lm.generate(prompt, 1)) for _ in range(2))
            start = time.perf_counter()
            tokens[name] = lm.generate(prompt, n)[0]
            rates[name].append((n - 1) / (time.perf_counter() - start - first))
    print(f"prompt {len(prompt[0])} tokens, {n} new tokens, batch 1", file=sys.stderr)
    base = next(iter(tokens.values()))
    for name, lm in lms.items():
        same = "same tokens" if tokens[name] == base else "different tokens"
        runs = ", ".join(f"{r:.1f}" for r in rates[name])
        print(
            f"{name}: {statistics.median(rates[name]):.1f} tokens/s (runs {runs}; "
            f"{'in-place GQA' if lm.in_place else 'eager'}; {same} as the first)"
        )


if __name__ == "__main__":
    main()
