"""The KV cache of a GroupQueryAttention causal LM graph (runtime.causal_onnx), kept in place.

One preallocated buffer per past input, [batch, kv_heads, capacity, head_dim], is bound with
onnxruntime's I/O binding as both the past input and the present output of its layer's
GroupQueryAttention, which writes only the new positions into it: a decoding step costs the new
token's work and attention's reads, never a copy of the cache (the eager graph concatenated past
and new keys, and repeated the KV heads for the query heads, in every layer at every step).

Rows are right-padded and each keeps its own length: a row's keys and values sit at positions
0..length-1 of its slice whatever its neighbours hold, and attention reads no further, so a
row's numbers do not depend on what shares its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from guardcli.core.errors import GuardError


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [B, longest], lengths [B]) as int64, padded on the right."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
    return ids, np.array([len(s) for s in sequences], dtype=np.int64)


class BoundCache:
    """The cache of `batch` rows of up to `capacity` positions for `session` (a graph with
    GroupQueryAttention), and the calls that extend it."""

    def __init__(self, session, names: tuple[list[str], list[str]], shape, dtype, batch: int):
        import onnxruntime as ort

        kv_heads, capacity, head_dim = shape
        self.ort, self.session = ort, session
        self.past_names, self.present_names = names
        self.buffers = [
            np.zeros((batch, kv_heads, capacity, head_dim), dtype=dtype) for _ in self.past_names
        ]
        self.lengths = np.zeros(batch, dtype=np.int64)
        self._bound: dict[tuple[int, int], list[Any]] = {}

    @property
    def capacity(self) -> int:
        return self.buffers[0].shape[2]

    def _values(self, start: int, stop: int) -> list[Any]:
        return row_values(self.ort, self.buffers, self._bound, start, stop)

    def fill(self, head: list[np.ndarray]) -> None:
        """Start every row from the same cached head ([1, kv_heads, n, head_dim] each)."""
        n = head[0].shape[2]
        for buffer, kv in zip(self.buffers, head, strict=True):
            buffer[:, :, :n] = kv
        self.lengths[:] = n

    def head(self) -> list[np.ndarray]:
        """Row 0's cache so far, as [1, kv_heads, length, head_dim] copies."""
        n = int(self.lengths[0])
        return [np.ascontiguousarray(b[:1, :, :n]) for b in self.buffers]

    def run(self, ids: np.ndarray, new: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
        """Run `ids` [b, q] (row r's first new[r] are real, the rest padding) after the rows'
        cached positions; returns each row's logits at its last real new token. Rows passed
        together must all be at the start of their cache, or all add one token: the op reads
        every other call's new tokens as the last of each row's length."""
        start, stop, _ = rows.indices(len(self.lengths))
        before = self.lengths[start:stop]
        after = before + new
        if int(after.max()) > self.capacity:
            raise GuardError(f"KV cache of {self.capacity} positions is full (internal error).")
        binding = bind_new_tokens(self.session, ids, before, after)
        binding.bind_output("logits", "cpu")
        values = self._values(start, stop)
        run_in_place(self.session, binding, (self.past_names, self.present_names), values, "")
        self.lengths[start:stop] = after
        return binding.get_outputs()[0].numpy()


def bind_new_tokens(session: Any, ids: np.ndarray, before: np.ndarray, after: np.ndarray) -> Any:
    """An I/O binding of `session` with ids [b, q] at positions before[r].. of each row r, and
    an attention mask covering each row's first after[r] positions (after: before + the row's
    real new tokens)."""
    mask = (np.arange(int(after.max()))[None, :] < after[:, None]).astype(np.int64)
    binding = session.io_binding()
    binding.bind_cpu_input("input_ids", np.ascontiguousarray(ids, dtype=np.int64))
    binding.bind_cpu_input("attention_mask", mask)
    binding.bind_cpu_input(
        "position_ids", before[:, None] + np.arange(ids.shape[1], dtype=np.int64)[None, :]
    )
    return binding


def row_values(
    ort: Any,
    arrays: list[np.ndarray],
    bound: dict[tuple[int, int], list[Any]],
    start: int,
    stop: int,
) -> list[Any]:
    """OrtValues on rows start..stop-1 of `arrays` (their memory, not a copy), made once per
    range and kept in `bound` (which its owner clears when the arrays are replaced)."""
    key = (start, stop)
    if key not in bound:
        bound[key] = [ort.OrtValue.ortvalue_from_numpy(a[start:stop]) for a in arrays]
    return bound[key]


def run_in_place(
    session: Any,
    binding: Any,
    names: tuple[Sequence[str], Sequence[str]],
    values: list[Any],
    what: str,
) -> None:
    """Bind each cache value as both its past input and its present output (the op writes the
    new positions into it), then run `binding` on `session`."""
    for past, present, value in zip(*names, values, strict=True):
        binding.bind_ortvalue_input(past, value)
        binding.bind_ortvalue_output(present, value)
    try:
        session.run_with_iobinding(binding)
    except Exception as exc:
        raise GuardError(f"onnxruntime failed{f' on {what}' if what else ''}: {exc}") from exc
