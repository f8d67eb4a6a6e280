"""The guard side of compare.py: one guard variant in guard's own Python, loaded once through
`load_guard`, driven by JSON-line commands on stdin (answers on stdout; whatever guard or a
library prints goes to stderr).

    .venv/bin/python benchmarks/llamacpp/guard_worker.py MODEL_DIR VARIANT [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

WORDS = "lighthouse garden recipe bicycle river morning teacup violin meadow lantern".split()


def _prompts(guard, n: int, tokens: int) -> list[list[int]]:
    """`n` rendered prompt-moderation inputs of at most `tokens` tokens (neutral words)."""
    from guardcli.core.verdicts import Record

    out = []
    for i in range(n):
        words = [WORDS[(i * 3 + k) % len(WORDS)] for k in range(tokens)]
        while True:
            ids = guard.encode([guard.render(Record(str(i), " ".join(words)))])[0].ids
            if len(ids) <= tokens or len(words) <= 1:
                break
            del words[-max(1, (len(ids) - tokens) // 2) :]  # a word is one token or more
        out.append(ids)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("variant")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    from guardcli.core.verdicts import RecordError
    from guardcli.families.loader import load_guard
    from guardcli.families.qwen3guard_gen import format as fmt

    t0 = time.perf_counter()
    # gguf-*: guard's own llama.cpp backend (--backend llamacpp), else its ONNX graphs.
    backend = "llamacpp" if args.variant.startswith("gguf-") else "onnxruntime"
    guard = load_guard(args.model, variant=args.variant, backend=backend, threads=args.threads)
    lm = guard.lm
    lm.eos_ids = []  # every generate run decodes exactly the tokens asked for
    suffix, firsts = guard.score_ids
    severities = list(firsts)
    sev_ids = [firsts[s] for s in severities]
    prompts: list[list[int]] = []
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "setup":
            prompts = _prompts(guard, cmd["n"], cmd["tokens"])
            head = lm.shared_prefix(prompts)
            out: dict[str, Any] = {
                "variant": guard.variant,
                "graph": str(guard.model.graph),
                "prompts": prompts,
                "head": list(head or ()),
                "suffix": suffix,
                "severities": severities,
                "severity_ids": sev_ids,
                "load_s": time.perf_counter() - t0,
            }
        elif op == "score":
            ids = prompts[cmd["i"]] + suffix
            t = time.perf_counter()
            row = lm.score_logits([ids], sev_ids, own_head=True)[0]
            out = {"ms": 1e3 * (time.perf_counter() - t), "logits": [float(x) for x in row]}
        elif op == "generate":
            ids, n = prompts[cmd["i"]], cmd["n"]
            t = time.perf_counter()
            lm.generate([ids], 1)
            t1 = time.perf_counter()
            tokens = lm.generate([ids], n)[0]
            t2 = time.perf_counter()
            # total_ms: the n - 1 steps after the first token (time of n - time of 1), as the
            # llama.cpp side times them; the n-token run repeats the prefill, taken off here.
            prefill = t1 - t
            out = {
                "prefill_ms": 1e3 * prefill,
                "total_ms": 1e3 * max(t2 - t1 - prefill, 0.0),
                "tokens": tokens,
            }
        elif op == "score_batch":  # batch.py: the prompts `ids` in one call
            batch = [prompts[i] + suffix for i in cmd["ids"]]
            t = time.perf_counter()
            rows = lm.score_logits(batch, sev_ids, own_head=True)
            out = {"ms": 1e3 * (time.perf_counter() - t), "logits": rows.astype(float).tolist()}
        elif op == "generate_batch":  # decode_ms: from the end of the prefill (in-place graphs)
            marks: dict[str, float] = {}
            prefill = getattr(lm, "_prefill_in_place", None)
            if prefill is not None:

                def timed(*a, _prefill=prefill, _marks=marks, **k):
                    result = _prefill(*a, **k)
                    _marks["prefilled"] = time.perf_counter()
                    return result

                lm._prefill_in_place = timed
            t = time.perf_counter()
            tokens = lm.generate([prompts[i] for i in cmd["ids"]], cmd["n"])
            t2 = time.perf_counter()
            if prefill is not None:
                lm._prefill_in_place = prefill
            out = {
                "ms": 1e3 * (t2 - t),
                "decode_ms": 1e3 * (t2 - marks["prefilled"]) if marks else None,
                "tokens": tokens,
            }
        elif op == "judge":
            decode = guard.tokenizer.tokenizer.decode
            severities_out = []
            for tokens in cmd["tokens"]:
                text = decode(tokens, skip_special_tokens=True)
                try:
                    severities_out.append(fmt.parse(text, response=False).severity)
                except RecordError as err:  # not in the answer format: guard's error verdict
                    severities_out.append(f"error:{err.type}")
            out = {"severities": severities_out}
        elif op == "rss":
            out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        else:
            out = {"error": f"unknown op {op}"}
        reply.write(json.dumps(out) + "\n")
        reply.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
