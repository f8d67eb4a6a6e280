"""`guard bench --duplicates P`: a prompt stream in which a share P of prompts repeat earlier ones,
timed with the verdict cache and without it.

Each condition walks its own copy of the same seeded stream from the start, so both see the
same repeats in the same places; the cached condition keeps one cache for the whole run, as
`guard classify` keeps one per run and `guard serve` one per server.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

DEFINITIONS = {
    "duplicates": "settings.duplicates: the share of prompts in the timed stream that repeat "
    "an earlier prompt (uniformly chosen); fresh prompts are the synthetic or --data prompts, "
    "then their words shuffled, so none repeats by chance",
    "no_cache_e2e_prompts_per_s": "--duplicates: prompts / seconds of the whole classify path "
    "on the duplicate stream, every prompt judged (--no-cache); e2e_prompts_per_s is this run",
    "cache_e2e_prompts_per_s": "--duplicates: the same stream through the verdict cache "
    "(prompts answered / seconds of the whole classify path, cache look-ups included)",
    "cache_speedup": "cache_e2e_prompts_per_s / no_cache_e2e_prompts_per_s",
    "cache_hit_share": "share of the cached run's prompts answered from the cache",
    "cache_identical": "the first prompts of the stream judged with and without the cache gave "
    "byte-identical verdicts (ids included)",
}


class DuplicateStream:
    """Prompts in which each one, with probability `share`, repeats an earlier one."""

    def __init__(self, texts: Sequence[str], share: float, seed: int = 0):
        if not texts:
            raise ValueError("no prompts")
        self.texts = list(texts)
        self.share = share
        self.rng = random.Random(seed)
        self.seen: list[str] = []
        self._fresh: set[str] = set()

    def fresh(self, n: int) -> str:
        """The n-th new prompt: the given ones first, then their words reshuffled (a shuffle
        met before is drawn again; a prompt too short to give a new one gets a number)."""
        base = self.texts[n % len(self.texts)]
        words = base.split(" ")
        rng = random.Random(n)
        text = base
        for _ in range(20):
            if text not in self._fresh:
                return text
            rng.shuffle(words)
            text = " ".join(words)
        return f"{base} {n}"

    def next(self) -> str:
        if self.seen and self.rng.random() < self.share:
            return self.rng.choice(self.seen)
        text = self.fresh(len(self.seen))
        self.seen.append(text)
        self._fresh.add(text)
        return text

    def take(self, count: int) -> list[str]:
        return [self.next() for _ in range(count)]


def add_cache_columns(row: dict[str, Any], cached: list[list[float]], identical: Any) -> None:
    """The cached run's figures beside a row timed on the same stream without the cache.
    `cached`: that run's batches (worker.Batch: ..., [4] e2e seconds, ..., [6] prompts in);
    [0] counts the prompts that reached the model."""
    answered = sum(s[6] for s in cached)
    rate = answered / sum(s[4] for s in cached)
    row["no_cache_e2e_prompts_per_s"] = row["e2e_prompts_per_s"]
    row["cache_e2e_prompts_per_s"] = rate
    row["cache_speedup"] = rate / row["e2e_prompts_per_s"]
    row["cache_hit_share"] = 1 - sum(s[0] for s in cached) / answered if answered else None
    row["cache_identical"] = identical
