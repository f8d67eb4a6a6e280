"""`guard bench --mode stream`: what judging a stream token by token costs on this machine.

For each variant, the context (tokens already judged) is prefilled once, growing through the
context lengths asked for; at each length the answer is fed in chunks of each size on top of
that cache (cropped back to the context between chunk sizes), every call timed. The p50 call
time / chunk size is the per-token cost; tokens/s is its inverse; the growth ratio is the p50
per token at the longest context over that at the shortest (a flat cost stays near 1; re-feeding
the sequence per token, as the authors' loop does, grows with the context). Agreement: each
variant's per-token risk argmax at the shortest context against the torch reference's (the
same tokens, one forward pass).

A family opts in with its `stream` hook (Family.stream), whose judge's `runner` has
`feed(ids) -> (risk logits, ...)`, `reset()`, `crop(length)` and `length`.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from guardcli.core import registry
from guardcli.core.errors import GuardError, input_error
from guardcli.core.synthetic import is_synthetic
from guardcli.jobs.bench.inputs import machine_info
from guardcli.jobs.bench.plan import parse_list

STREAM_MODE = "stream"
DEFAULT_CHUNKS = (1, 8, 16)
DEFAULT_CONTEXTS = (128, 1024, 4096)
MIN_TIMED_TOKENS = 48  # answer tokens timed per context and chunk size (at least 3 chunks)
PREFILL_PIECE = 512  # the context is prefilled in pieces of this many tokens
REFERENCE = "torch"

DEFINITIONS = {
    "p50_ms_per_token": "median over the timed calls of (call time / chunk size): one call "
    "feeds `chunk` answer tokens on top of `context` tokens already in the cache",
    "tokens_per_s": "1000 / p50_ms_per_token: one stream's sustained rate",
    "prefill_ms": "prefilling the `context` tokens from an empty cache (pieces of "
    f"{PREFILL_PIECE}): what a prompt check of that many tokens costs, and what the authors' "
    "loop, which re-feeds the whole sequence, pays per token",
    "growth": "p50_ms_per_token at the longest context / at the shortest, same variant and "
    "chunk size (from the rows above)",
    "agreement_vs_reference": "share of the timed answer tokens, at the shortest context, "
    "whose risk argmax equals the torch reference's (null when torch is not installed)",
    "max_abs_dlogit_vs_reference": "largest |risk logit - reference risk logit| over them",
}


@dataclass
class StreamBenchConfig:
    model_dir: Path
    variants: Sequence[str]
    chunks: Sequence[int] = DEFAULT_CHUNKS
    contexts: Sequence[int] = DEFAULT_CONTEXTS
    threads: int | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def parse_counts(text: str, what: str, *, maximum: int | None = None) -> list[int]:
    """A comma list of whole numbers >= 1 (and <= `maximum`), in the order given, once each."""
    try:
        values = [int(t) for t in parse_list(text, what)]
    except ValueError:
        raise input_error(
            f"--{what} {text!r} is not a list of whole numbers.", hint=f"e.g. --{what} 1,8,16"
        ) from None
    if any(v < 1 for v in values):
        raise input_error(f"--{what} values must be at least 1.")
    if maximum is not None and any(v > maximum for v in values):
        raise input_error(
            f"--{what} values must be at most {maximum:,} (the model's context, less the timed "
            "answer tokens)."
        )
    return list(dict.fromkeys(values))


def stream_hook(model_dir: Path) -> Callable[..., Any]:
    """The family's stream opener; a GuardError when the family judges no streams."""
    family = registry.folder_family(Path(model_dir))
    if not family.stream:
        raise input_error(
            f"--mode stream needs a model that judges streams token by token; {model_dir} is a "
            f"{family.name} model.",
            hint="Use a qwen3guard-stream model folder, or drop --mode stream.",
        )
    return registry.load(family.stream)


def timed_tokens(chunks: Sequence[int]) -> int:
    return max(MIN_TIMED_TOKENS, 3 * max(chunks))


def _runner(opener: Callable[..., Any], model_dir: Path, variant: str, threads: int | None):
    return opener(str(model_dir), variant, threads=threads).judge.runner


def _prefill(runner, ids: list[int]) -> float:
    start = time.perf_counter()
    for i in range(0, len(ids), PREFILL_PIECE):
        runner.feed(ids[i : i + PREFILL_PIECE])
    return time.perf_counter() - start


def _reference(opener, config: StreamBenchConfig, context: list[int], answer: list[int]):
    """The torch reference's risk logits of `answer` after `context`, or None without torch."""
    try:
        runner = _runner(opener, config.model_dir, REFERENCE, config.threads)
    except GuardError:
        return None
    _prefill(runner, context)
    return runner.feed(answer)[0]


def _variant_rows(
    runner, config: StreamBenchConfig, ids: list[int], answer: list[int], reference, progress
) -> list[dict[str, Any]]:
    rows = []
    runner.reset()
    runner.feed(ids[:8])  # warm-up
    runner.reset()
    prefill_s = 0.0
    for context in sorted(config.contexts):
        progress(f"prefilling {context} tokens")
        prefill_s += _prefill(runner, ids[runner.length : context])
        for k in config.chunks:
            runner.crop(context)
            per_token, risks = [], []
            for i in range(0, len(answer) - k + 1, k):
                start = time.perf_counter()
                risk = runner.feed(answer[i : i + k])[0]
                per_token.append((time.perf_counter() - start) / k)
                risks.append(risk)
            p50 = statistics.median(per_token)
            row: dict[str, Any] = {
                "context": context,
                "chunk": k,
                "timed_tokens": len(per_token) * k,
                "p50_ms_per_token": 1e3 * p50,
                "tokens_per_s": 1 / p50,
                "prefill_ms": 1e3 * prefill_s,
                "agreement_vs_reference": None,
                "max_abs_dlogit_vs_reference": None,
            }
            if reference is not None and context == min(config.contexts):
                got = np.concatenate(risks)
                want = reference[: len(got)]
                row["agreement_vs_reference"] = float(np.mean(got.argmax(-1) == want.argmax(-1)))
                row["max_abs_dlogit_vs_reference"] = float(np.abs(got - want).max())
            rows.append(row)
        runner.crop(context)
    return rows


def growth(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per variant and chunk size: the longest context's p50 per token over the shortest's."""
    out = []
    keys = dict.fromkeys((r["variant"], r["chunk"]) for r in rows)
    for variant, k in keys:
        mine = sorted(
            (r for r in rows if r["variant"] == variant and r["chunk"] == k),
            key=lambda r: r["context"],
        )
        lo, hi = mine[0], mine[-1]
        out.append(
            {
                "variant": variant,
                "chunk": k,
                "from_context": lo["context"],
                "to_context": hi["context"],
                "growth": hi["p50_ms_per_token"] / lo["p50_ms_per_token"],
            }
        )
    return out


def run_stream_bench(
    config: StreamBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Time `config.variants` one after another (one loaded at a time); the JSON-ready
    report."""
    opener = stream_hook(config.model_dir)
    rng = random.Random(config.seed)
    # Ordinary-text token ids (below the added tokens): the cost does not depend on which.
    ids = [rng.randrange(100, 150_000) for _ in range(max(config.contexts))]
    answer = [rng.randrange(100, 150_000) for _ in range(timed_tokens(config.chunks))]
    progress("running the reference")
    reference = _reference(opener, config, ids[: min(config.contexts)], answer)
    rows: list[dict[str, Any]] = []
    for variant in config.variants:
        progress(f"loading {variant}")
        start = time.perf_counter()
        runner = _runner(opener, config.model_dir, variant, config.threads)
        load_s = time.perf_counter() - start
        for row in _variant_rows(runner, config, ids, answer, reference, progress):
            rows.append({"variant": variant, **row, "load_s": load_s})
        del runner
    chunk_order = list(config.chunks)
    rows.sort(
        key=lambda r: (
            list(config.variants).index(r["variant"]),
            chunk_order.index(r["chunk"]),
            r["context"],
        )
    )
    return {
        "machine": machine_info(config.threads),
        "model": {
            "path": str(config.model_dir),
            "family": registry.folder_family(Path(config.model_dir)).name,
            "synthetic": is_synthetic(Path(config.model_dir)),
            **config.extra,
        },
        "settings": {
            "mode": STREAM_MODE,
            "variants": list(config.variants),
            "chunks": list(config.chunks),
            "contexts": sorted(config.contexts),
            "timed_tokens": len(answer),
            "prefill_piece": PREFILL_PIECE,
            "reference": REFERENCE if reference is not None else None,
        },
        "results": rows,
        "growth": growth(rows),
        "definitions": DEFINITIONS,
    }
