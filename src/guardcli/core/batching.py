"""Token-length bucketing under a token budget, and padding. Order is restored by the caller
from the indices each batch carries."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_BATCH_SIZE = 16
DEFAULT_TOKEN_BUDGET = 4096  # padded tokens per batch


def plan_batches(
    lengths: Sequence[int],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
) -> list[list[int]]:
    """Group item indices into batches of similar length.

    Items are sorted by length so padding stays small; a batch closes when it holds
    `batch_size` items or when one more item would make `items x longest` exceed the budget
    (a single over-budget item still gets a batch of its own).
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max(lengths[i], max((lengths[j] for j in current), default=0))
        if current and (len(current) >= batch_size or (len(current) + 1) * longest > token_budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def pad(
    sequences: Sequence[Sequence[int]], pad_id: int, *, side: str = "right"
) -> tuple[np.ndarray, np.ndarray]:
    """Pad to the longest sequence (on the right, or the left): (input_ids, attention_mask) as
    int64 arrays."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if not len(seq):
            continue
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span] = seq
        mask[row, span] = 1
    return ids, mask
