"""Open streams and their KV caches: the store (LRU + TTL eviction under a memory cap) and the
coalescer that runs concurrent streams' new tokens as one batched forward.

Eviction drops a stream's cache, never the stream: it keeps its token ids and text, and its
next append rebuilds the cache from them in the same forward (see the family's served.py).
A stream is closed only by DELETE, or after `expire_s` without use.

Threads: the event loop owns the store; appends run on worker threads (a push tokenizes, then
blocks in `Coalescer.feed`); one model thread runs the batches. The coalescer waits for
company while some stream being appended has not yet reached it, or fewer have than shared the
last forward (at most `max_wait_s`, or a quarter of the last forward's time if longer), so a
lone stream never waits and eight appending together share one forward.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
LINGER = 0.25  # the longest wait for company, as a share of the last forward's time


@dataclass
class Stream:
    """One open stream: its judge (and through it, its SlotRunner), and its bookkeeping."""

    id: str
    judge: Any
    prompt: dict[str, Any]
    last_used: float
    feed: str | None = None  # "text" or "token_ids", fixed by the first append
    finished: bool = False
    failed: str | None = None
    busy: int = 0  # appends in flight: never evicted meanwhile
    lock: Any = None  # an asyncio.Lock, so one stream's appends run in arrival order
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def slot(self) -> Any:
        return self.judge.runner


class StreamStore:
    """Streams by id, least recently used first. `enforce()` applies the limits."""

    def __init__(
        self,
        *,
        cache_bytes: int,
        ttl_s: float,
        expire_s: float,
        on_evict: Callable[[str], None] | None = None,
        clock: Clock = time.monotonic,
    ):
        self.cap, self.ttl, self.expire = cache_bytes, ttl_s, expire_s
        self.on_evict = on_evict
        self.clock = clock
        self._streams: OrderedDict[str, Stream] = OrderedDict()

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, stream_id: str) -> bool:
        return stream_id in self._streams

    def add(self, stream: Stream) -> None:
        self._streams[stream.id] = stream
        self.touch(stream)

    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def touch(self, stream: Stream) -> None:
        stream.last_used = self.clock()
        if stream.id in self._streams:
            self._streams.move_to_end(stream.id)

    def remove(self, stream_id: str) -> Stream | None:
        stream = self._streams.pop(stream_id, None)
        if stream is not None and not stream.busy:  # a busy one's cache goes when it does
            stream.slot.evict()  # its memory back now (a pooled cache row, for another stream)
        return stream

    @property
    def cache_bytes(self) -> int:
        return sum(s.slot.cache_bytes for s in self._streams.values())

    def enforce(self) -> None:
        """Close streams idle past expire_s; drop caches idle past ttl_s; then drop the least
        recently used caches until the rest fit under the cap. Busy streams are left alone."""
        now = self.clock()
        for stream in list(self._streams.values()):
            if stream.busy:
                continue
            idle = now - stream.last_used
            if idle > self.expire:
                self.remove(stream.id)
            elif idle > self.ttl and stream.slot.cache_bytes:
                self._evict(stream, "ttl")
        total = self.cache_bytes
        for stream in list(self._streams.values()):  # least recently used first
            if total <= self.cap:
                break
            if stream.busy or not stream.slot.cache_bytes:
                continue
            total -= self._evict(stream, "memory")

    def _evict(self, stream: Stream, reason: str) -> int:
        freed = int(stream.slot.evict())
        if self.on_evict is not None:
            self.on_evict(reason)
        return freed


@dataclass
class _Feed:
    slot: Any
    ids: list[int]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class Coalescer:
    """Runs `forward_batch([(slot, ids), ...]) -> [logits, ...]` on one model thread for the
    feeds that worker threads hand it, up to `max_batch` streams at a time."""

    def __init__(
        self,
        forward_batch: Callable[[Sequence[tuple[Any, list[int]]]], list[Any]],
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.forward_batch = forward_batch
        self.max_batch, self.max_wait = max_batch, max_wait_s
        self.on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: list[_Feed] = []
        self._active = 0  # pushes in progress (each will feed, or is waiting in the queue)
        self._last = 0  # streams in the last forward
        self._seconds = 0.0  # how long it took
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="guard-streams", daemon=True)
        self._thread.start()

    @contextmanager
    def working(self) -> Iterator[None]:
        """Around a push: the coalescer waits for it while forming a batch."""
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def feed(self, slot: Any, ids: list[int]) -> Any:
        """One stream's new ids, run with whatever else is waiting (blocks its thread)."""
        item = _Feed(slot, ids)
        with self._cond:
            if self._stopped:
                raise RuntimeError("server shutting down")
            self._queue.append(item)
            self._cond.notify_all()
        item.done.wait()
        if item.error is not None:
            raise item.error
        return item.result

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _take(self) -> list[_Feed] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped:
                for item in self._queue:
                    item.error = RuntimeError("server shutting down")
                    item.done.set()
                return None
            # Company expected: the pushes under way, or as many streams as shared the last
            # forward (their next feeds are on their way back from the event loop).
            # Waiting a quarter of a forward to double the batch pays: a full-size forward
            # takes seconds on a CPU, and the streams' round trips take milliseconds.
            want = min(max(self._active, self._last), self.max_batch)
            deadline = time.monotonic() + max(self.max_wait, LINGER * self._seconds)
            while len(self._queue) < want:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._last = len(batch)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            start = time.perf_counter()
            try:
                results = self.forward_batch([(f.slot, f.ids) for f in batch])
            except Exception as exc:
                self._alone(batch, exc)
            else:
                for item, result in zip(batch, results, strict=True):
                    item.result = result
            self._seconds = time.perf_counter() - start
            if self.on_batch is not None:
                self.on_batch(len(batch), self._seconds)
            for item in batch:
                item.done.set()

    def _alone(self, batch: list[_Feed], exc: Exception) -> None:
        """A failed batch: each stream again on its own, so one cannot fail the others."""
        for item in batch:
            if len(batch) == 1:
                item.error = exc
                continue
            try:
                item.result = self.forward_batch([(item.slot, item.ids)])[0]
            except Exception as again:
                item.error = again
