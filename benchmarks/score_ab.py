"""Score mode of two Qwen3Guard-Gen (or Llama Guard) model folders side by side in one process:
the same rendered prompts (neutral words, the template head reused), each folder's graph run in
turn prompt after prompt, so drift on a shared host hits both alike. For comparing two builds of
the same weights (say an INT8 graph made by an older guard against one made now).

    python benchmarks/score_ab.py OLD_DIR NEW_DIR --variant int8 --prompts 60 --tokens 377

Prints one JSON object: each folder's p50 and fastest milliseconds, the ratio of the p50s, and
the largest difference between their logits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "llamacpp"))

from guard_worker import _prompts  # noqa: E402

from guardcli.families.loader import load_guard  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--prompts", type=int, default=60)
    ap.add_argument("--tokens", type=int, default=377)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    guards = [load_guard(m, variant=args.variant, threads=args.threads) for m in (args.a, args.b)]
    suffix, firsts = guards[0].score_ids
    ids = [firsts[s] for s in firsts]
    prompts = [p + suffix for p in _prompts(guards[0], args.prompts, args.tokens)]
    for g in guards:  # the head's KV and the restricted head's session, made before timing
        g.lm.score_logits([prompts[0]], ids)
    ms: list[list[float]] = [[], []]
    logits: list[list[np.ndarray]] = [[], []]
    for i, prompt in enumerate(prompts):
        for k in (0, 1) if i % 2 == 0 else (1, 0):
            t = time.perf_counter()
            logits[k].append(guards[k].lm.score_logits([prompt], ids))
            ms[k].append(1e3 * (time.perf_counter() - t))
    p50 = [float(np.median(m)) for m in ms]
    print(
        json.dumps(
            {
                "a": {"p50_ms": round(p50[0], 1), "fastest_ms": round(min(ms[0]), 1)},
                "b": {"p50_ms": round(p50[1], 1), "fastest_ms": round(min(ms[1]), 1)},
                "a_over_b": round(p50[0] / p50[1], 3),
                "max_abs_dlogit": float(
                    max(np.abs(x - y).max() for x, y in zip(*logits, strict=True))
                ),
                "prompt_tokens": len(prompts[0]),
            }
        )
    )


if __name__ == "__main__":
    main()
