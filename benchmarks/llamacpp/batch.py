"""guard against llama.cpp at batch B (default 8) on the same Qwen3Guard-Gen weights: score mode
and decoding with B sequences in one call, the template head's KV computed once and shared.

The batch-1 comparison is compare.py; this is its batch-B side. Runs in the llama.cpp venv like
compare.py; guard runs in guard_worker.py (guard's own Python) over a pipe. llama.cpp runs
through its low-level API: one context with B sequences (`n_seq_max`), the head evaluated on
sequence 0 and copied to the others (`llama_memory_seq_cp`), then each batch holds every
sequence's tokens with its sequence id (score: the B tails in one `llama_decode`; decoding: one
token per sequence per step). guard: `guard.lm.score_logits` and `guard.lm.generate` on the B
prompts (its in-place cache runs the B tails one after another, then decodes the B rows
together).

Per engine: score ms per prompt at batch B (one batch's time / B, p50 over batches), decode
tokens/s at batch B (B x (n - 1) tokens / the time from the end of the prefill), and whether
a batch gives each prompt the logits and greedy tokens it gets alone (max |Δ logit|, share of
equal token sequences).

    PYTHONPATH=<llama-cpp-python site-packages> .venv-llamacpp/bin/python \\
        benchmarks/llamacpp/batch.py MODEL_DIR --gguf q8_0=MODEL_DIR/gguf-q8_0/model.gguf \\
        --variant int8 --batch 8 --batches 3 --new-tokens 16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import GuardEngine, cpu_name, extra_bufts_work  # noqa: E402


class LlamaBatchEngine:
    """One GGUF in a llama.cpp context holding `seqs` sequences."""

    def __init__(self, label: str, path: Path, seqs: int, n_ctx: int, threads: int, bufts: bool):
        import llama_cpp as lc

        self.lc, self.seqs, self.name = lc, seqs, f"llama.cpp {label.upper()}"
        mparams = lc.llama_model_default_params()
        if hasattr(mparams, "use_extra_bufts"):
            mparams.use_extra_bufts = bufts
        self.model = lc.llama_model_load_from_file(str(path).encode(), mparams)
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = n_ctx * seqs
        cparams.n_batch = cparams.n_ubatch = n_ctx * seqs
        cparams.n_seq_max = seqs
        cparams.n_threads = cparams.n_threads_batch = threads
        if hasattr(cparams, "kv_unified"):
            cparams.kv_unified = True  # the head's cells shared by every sequence
        self.ctx = lc.llama_init_from_model(self.model, cparams)
        self.mem = lc.llama_get_memory(self.ctx)
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))
        self.batch = lc.llama_batch_init(n_ctx * seqs, 0, seqs)
        self.head: list[int] = []

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> list[int]:
        """Decode (token, position, sequence, wants logits) items in one batch; returns the
        batch indices whose logits were asked for."""
        b = self.batch
        b.n_tokens = len(items)
        out = []
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, pos, 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
            if logits:
                out.append(i)
        if self.lc.llama_decode(self.ctx, b) != 0:
            raise SystemExit(f"{self.name}: llama_decode failed")
        return out

    def _logits(self, index: int) -> np.ndarray:
        ptr = self.lc.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def set_head(self, head: list[int]) -> None:
        self.lc.llama_memory_clear(self.mem, True)
        self._decode([(t, p, 0, False) for p, t in enumerate(head)])
        for s in range(1, self.seqs):
            self.lc.llama_memory_seq_cp(self.mem, 0, s, -1, -1)
        self.head = head

    def _prefill(self, prompts: list[list[int]]) -> list[np.ndarray]:
        n = len(self.head)
        items = []
        for s, ids in enumerate(prompts):
            assert ids[:n] == self.head
            self.lc.llama_memory_seq_rm(self.mem, s, n, -1)  # back to the head
            tail = ids[n:]
            items += [(t, n + k, s, k == len(tail) - 1) for k, t in enumerate(tail)]
        return [self._logits(i) for i in self._decode(items)]

    def score(self, prompts: list[list[int]], sev_ids: list[int]) -> tuple[float, list]:
        t = time.perf_counter()
        rows = [row[sev_ids] for row in self._prefill(prompts)]
        return 1e3 * (time.perf_counter() - t), [r.astype(float).tolist() for r in rows]

    def generate(self, prompts: list[list[int]], n: int) -> tuple[float, float, list]:
        t = time.perf_counter()
        toks = [int(np.argmax(r)) for r in self._prefill(prompts)]
        t1 = time.perf_counter()
        out = [[tok] for tok in toks]
        for step in range(n - 1):
            items = [(toks[s], len(p) + step, s, True) for s, p in enumerate(prompts)]
            toks = [int(np.argmax(self._logits(i))) for i in self._decode(items)]
            for s, tok in enumerate(toks):
                out[s].append(tok)
        return 1e3 * (t1 - t), 1e3 * (time.perf_counter() - t1), out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--gguf", action="append", default=[], help="LABEL=FILE (repeatable)")
    ap.add_argument("--variant", default="int8", help="guard variants, comma separated")
    ap.add_argument(
        "--guard-python",
        default=str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"),
    )
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3, help="score batches timed")
    ap.add_argument("--tokens", type=int, default=377)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--n-ctx", type=int, default=512, help="positions per sequence")
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    B = args.batch
    guards = [GuardEngine(args, v) for v in args.variant.split(",")]
    setups = [g.setup(B * (args.batches + 1), args.tokens) for g in guards]
    prompts, head = setups[0]["prompts"], setups[0]["head"]
    suffix, sev_ids = setups[0]["suffix"], setups[0]["severity_ids"]
    llamas = []
    for spec in args.gguf:
        label, _, path = spec.partition("=")
        bufts = extra_bufts_work(Path(path), args.threads)
        llamas.append(LlamaBatchEngine(label, Path(path), B, args.n_ctx, args.threads, bufts))
        llamas[-1].set_head(head)
    log(f"{len(prompts)} prompts, head {len(head)} reused, batch {B}, {args.threads} threads")
    groups = [list(range(k * B, (k + 1) * B)) for k in range(args.batches + 1)]
    rows = []
    for e in [*guards, *llamas]:
        is_guard = isinstance(e, GuardEngine)
        score_ms, logits = [], []
        for k, group in enumerate(groups):  # the first batch warms up
            if is_guard:
                out = e.ask(op="score_batch", ids=group)
                ms, got = out["ms"], out["logits"]
            else:
                ms, got = e.score([prompts[i] + suffix for i in group], sev_ids)
            if k:
                score_ms.append(ms / B)
                logits += got
        alone = []  # the same prompts one at a time, for batch invariance
        for i in groups[1][:2]:
            if is_guard:
                alone.append(e.ask(op="score_batch", ids=[i])["logits"][0])
            else:
                alone.append(e.score([prompts[i] + suffix], sev_ids)[1][0])
        d_logit = max(
            float(np.abs(np.array(a) - np.array(b)).max())
            for a, b in zip(alone, logits[:2], strict=True)
        )
        group = groups[1]
        if is_guard:
            gn = e.ask(op="generate_batch", ids=group, n=args.new_tokens)
            decode_ms, tokens = gn["decode_ms"], gn["tokens"]
            if decode_ms is None:  # a graph without the in-place cache: time of n minus of 1
                decode_ms = gn["ms"] - e.ask(op="generate_batch", ids=group, n=1)["ms"]
        else:
            _, decode_ms, tokens = e.generate([prompts[i] for i in group], args.new_tokens)
        rows.append(
            {
                "engine": e.name,
                "batch": B,
                "score_ms_per_prompt_p50": round(statistics.median(score_ms), 1),
                "decode_tokens_per_s": round(B * (args.new_tokens - 1) / (decode_ms / 1e3), 1),
                "max_abs_dlogit_batch_vs_alone": d_logit,
                "tokens": tokens,
            }
        )
        log(
            f"{e.name}: score {rows[-1]['score_ms_per_prompt_p50']} ms/prompt, "
            f"decode {rows[-1]['decode_tokens_per_s']} tok/s"
        )
    ref = rows[0]["tokens"]
    for r in rows:
        r["same_tokens_as_first"] = (
            sum(a == b for a, b in zip(r.pop("tokens"), ref, strict=True)) / B
        )
    for g in guards:
        g.close()
    report = {"cpu": cpu_name(), "threads": args.threads, "load": os.getloadavg(), "rows": rows}
    text = json.dumps(report, indent=1)
    print(text)
    if args.json_out:
        args.json_out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
