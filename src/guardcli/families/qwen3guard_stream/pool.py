"""Served streams' KV caches in one pool, updated in place (GroupQueryAttention graphs).

Per layer key and value, one preallocated array [rows, kv_heads, capacity, head_dim]; each
served stream (served.SlotRunner) owns a row. The arrays are bound through onnxruntime's I/O
binding as both GroupQueryAttention's past and its present (the share-buffer layout): the op
writes each row's new positions at that row's length and reads no further, so a forward copies
no cache, whatever the context and however many streams share it. Rows and capacity grow by
doubling when a forward needs more (one copy each time); an evicted or closed stream frees its
row (a stream that is garbage-collected too), and is re-prefilled into a free row on next use.
Memory is given back too: before a forward, trailing free rows and capacity far above the
longest row in use are dropped (halved while a quarter or less is used, so that growing and
shrinking do not alternate), so the pool stays within ~4x of what its streams hold.

How a batch runs (`PoolBatch`): onnxruntime's CPU GroupQueryAttention takes several rows beside
a cache only one new token each ("batch_size must be 1 when sequence_length > 1 and past
context is given"). So the streams appending one token run as one forward over the contiguous
range of rows from the lowest to the highest of theirs (rows are handed out lowest first, so
concurrent streams sit together): a row in that range without a new token gets a throwaway
token at its current length, which attention reads past nothing real and the row's next real
token overwrites. Streams appending several tokens beside a cache run one at a time on their
own row (a row of a C-contiguous pool is contiguous: bound as it is, no copy), or, with
`multi="steps"`, as k one-token forwards over the rows (fewer forwards when k is smaller than
the number of such streams; `auto` picks the fewer). A stream without a cache (new, or evicted:
its kept ids run again) is prefilled alone on its row.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from guardcli.families.qwen3guard_stream.runners import BUFFER_STEP, Logits
from guardcli.runtime.kv_buffers import bind_new_tokens, row_values, run_in_place

PAD_ID = 151643  # <|endoftext|>; padded or throwaway positions are never read as real ones


class CachePool:
    """The arrays, which row belongs to which stream, and the OrtValues bound on ranges of
    rows (their memory, not copies; remade when the arrays grow)."""

    def __init__(self, runner: Any, *, rows: int = 4, capacity: int = BUFFER_STEP):
        import onnxruntime as ort

        self.ort = ort
        self.shape = (runner.kv_heads, runner.head_dim)
        self.dtype = runner.dtype
        self.arrays = [self._zeros(rows, capacity) for _ in runner.past_names]
        self.least = (rows, capacity)  # never compacted below this
        self.owners: list[weakref.ref | None] = [None] * rows
        self.growths = 0
        self._bound: dict[tuple[int, int], list[Any]] = {}
        self._lock = threading.Lock()

    def _zeros(self, rows: int, capacity: int) -> np.ndarray:
        kv_heads, head_dim = self.shape
        return np.zeros((rows, kv_heads, capacity, head_dim), dtype=self.dtype)

    @property
    def rows(self) -> int:
        return self.arrays[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.arrays[0].shape[2]

    @property
    def row_bytes(self) -> int:
        """What one stream's row holds, all layers together (its share of the pool)."""
        return len(self.arrays) * self.arrays[0][0].nbytes

    def owner(self, row: int) -> Any:
        ref = self.owners[row]
        return None if ref is None else ref()

    def length(self, row: int) -> int:
        """Positions of `row` in use (a free row: none)."""
        slot = self.owner(row)
        return 0 if slot is None or slot.row != row else slot.length

    def acquire(self, slot: Any) -> int:
        """The lowest free row for `slot` (the rows doubled when none is free)."""
        with self._lock:
            free = [r for r in range(self.rows) if self.owner(r) is None]
            if not free:
                free = [self.rows]
                self._resize(2 * self.rows, self.capacity)
            self.owners[free[0]] = weakref.ref(slot)
            return free[0]

    def release(self, row: int) -> None:
        with self._lock:
            self.owners[row] = None

    def reserve(self, positions: int) -> None:
        """Room for `positions` positions in every row (capacity doubled as often as needed)."""
        if positions > self.capacity:
            with self._lock:
                capacity = self.capacity
                while capacity < positions:
                    capacity *= 2
                self._resize(self.rows, capacity)

    def compact(self) -> None:
        """Drop trailing free rows and unused capacity while a quarter or less of either is in
        use (not below the first size). Only between forwards: a forward's bound values are
        on the arrays it started with."""
        with self._lock:
            used = [r for r in range(self.rows) if self.owner(r) is not None]
            top = max(used) + 1 if used else 0
            longest = max((self.length(r) for r in used), default=0) + 1
            rows, capacity = self.rows, self.capacity
            while rows // 2 >= self.least[0] and top <= rows // 4:
                rows //= 2
            while capacity // 2 >= self.least[1] and longest <= capacity // 4:
                capacity //= 2
            if (rows, capacity) != (self.rows, self.capacity):
                self._resize(rows, capacity)

    def _resize(self, rows: int, capacity: int) -> None:
        keep_rows, keep = min(rows, self.rows), min(capacity, self.capacity)
        resized = []
        for old in self.arrays:
            new = self._zeros(rows, capacity)
            new[:keep_rows, :, :keep] = old[:keep_rows, :, :keep]
            resized.append(new)
        self.arrays = resized
        self.owners = (self.owners + [None] * rows)[:rows]
        self._bound.clear()
        self.growths += 1

    def values(self, start: int, stop: int) -> list[Any]:
        return row_values(self.ort, self.arrays, self._bound, start, stop)


@dataclass
class _Plan:
    slot: Any
    new: list[int]
    run: list[int]  # what runs: the new ids, or after an eviction every kept id too
    before: int  # positions already in the row
    fresh: bool  # the row was taken for this forward


class PoolBatch:
    """served.OnnxBatch's job on a CachePool: `__call__([(slot, new ids), ...])` runs the
    streams' new ids and returns each one's logits for them."""

    def __init__(self, runner: Any, *, rows: int = 4, capacity: int = BUFFER_STEP):
        self.runner = runner
        self.pool = CachePool(runner, rows=rows, capacity=capacity)
        self.dtype = runner.dtype
        self.multi = "rows"  # several new tokens beside a cache: "rows", "steps" or "auto"
        self.forwards: Counter[int] = Counter()  # streams per session run -> how many runs

    def __call__(self, items: Sequence[tuple[Any, list[int]]]) -> list[Logits]:
        plans = [self._plan(slot, list(new)) for slot, new in items]
        try:
            out = self._forward(plans)
        except BaseException:
            for p in plans:
                if p.fresh:  # nothing valid in it: the stream is prefilled again next time
                    p.slot.release()
            raise
        for p in plans:
            p.slot.advance(p.new, None, rebuilt=p.fresh and len(p.run) > len(p.new))
        return [out[i] for i in range(len(plans))]

    def _plan(self, slot: Any, new: list[int]) -> _Plan:
        if slot.row is not None:
            return _Plan(slot, new, new, slot.length, False)
        slot.pool = self.pool
        slot.row = self.pool.acquire(slot)
        return _Plan(slot, new, slot.ids + new, 0, True)

    def _forward(self, plans: list[_Plan]) -> dict[int, Logits]:
        pool = self.pool
        pool.compact()
        idle = max(pool.length(r) for r in range(pool.rows)) + 1  # throwaway tokens' room
        pool.reserve(max([idle] + [p.before + len(p.run) for p in plans]))
        out: dict[int, Logits] = {}
        alone = [i for i, p in enumerate(plans) if len(p.run) > 1 and p.before == 0]
        beside = [i for i, p in enumerate(plans) if i not in alone]
        several = [i for i in beside if len(plans[i].run) > 1]
        ones = [i for i in beside if i not in several]
        steps = max((len(plans[i].run) for i in several), default=1)
        # Forwards either way: one per step, or one per stream with several tokens (+ one).
        if self.multi == "steps" or (self.multi == "auto" and steps < len(several) + bool(ones)):
            ones, several = beside, []
        else:
            steps = 1
        for step in range(steps if ones else 0):
            self._step(plans, ones, step, out)
        for i in alone + several:
            p = plans[i]
            logits = self._rows(p.slot.row, np.array([p.run]), np.array([p.before]))
            out[i] = tuple(x[0, len(p.run) - len(p.new) :] for x in logits)  # type: ignore[assignment]
        return out

    def _step(self, plans: list[_Plan], which: list[int], step: int, out: dict) -> None:
        """Token `step` of each plan in `which` (a throwaway past a plan's end) in one forward
        over the range of their rows; each plan's logits for its new ids added to `out`."""
        mine = [plans[i] for i in which]
        lo = min(p.slot.row for p in mine)
        hi = max(p.slot.row for p in mine) + 1
        ids = np.full((hi - lo, 1), PAD_ID, dtype=np.int64)
        before = np.array([self.pool.length(r) for r in range(lo, hi)], dtype=np.int64)
        for p in mine:
            k = p.slot.row - lo
            before[k] = p.before + min(step, len(p.run))
            if step < len(p.run):
                ids[k, 0] = p.run[step]
        logits = self._rows(lo, ids, before, streams=len(mine))
        for i, p in zip(which, mine, strict=True):
            if len(p.run) - len(p.new) <= step < len(p.run):
                row = [x[p.slot.row - lo] for x in logits]
                have = out.get(i)
                out[i] = tuple(  # type: ignore[assignment]
                    r if have is None else np.concatenate([h, r])
                    for h, r in zip(have or (None,) * 4, row, strict=True)
                )

    def _rows(
        self, start: int, ids: np.ndarray, before: np.ndarray, streams: int = 1
    ) -> list[np.ndarray]:
        """One session run over rows start.. of the pool: ids [b, q] after each row's `before`
        positions; the four logits [b, q, classes] as float32."""
        r = self.runner
        binding = bind_new_tokens(r.session, ids, before, before + ids.shape[1])
        for name in r.output_names[:4]:
            binding.bind_output(name, "cpu")
        values = self.pool.values(start, start + ids.shape[0])
        names = (r.past_names, r.output_names[4:])
        run_in_place(r.session, binding, names, values, r.path.name)
        self.forwards[streams] += 1
        return [o.numpy().astype(np.float32) for o in binding.get_outputs()[:4]]
