"""Dynamic micro-batching: concurrent requests coalesce into one model call.

Requests wait in a bounded queue. A single worker takes up to `max_batch` texts at a time,
waiting at most `max_wait_ms` after the oldest request arrived for more to come, and runs them
through `Guard.classify_records` (which buckets them by token length) on one model thread, so
the event loop keeps accepting requests while the model runs. While a batch runs, the next one
fills up, so under load batches are full and nobody waits for the timer.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from guardcli.core.verdicts import Record, Verdict

Classify = Callable[[list[Record]], list[Verdict]]


class QueueFull(Exception):
    """The queue holds `max_queue` texts already; the caller should retry later."""

    def __init__(self, retry_after: int):
        super().__init__(f"queue full; retry after {retry_after}s")
        self.retry_after = retry_after


@dataclass
class _Job:
    records: list[Record]
    future: asyncio.Future[list[Verdict]]
    arrived: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    def __init__(
        self,
        classify: Classify,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        max_queue: int = 1024,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        self.classify = classify
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.on_batch = on_batch
        self.pending = 0  # texts queued, not yet taken by the worker
        self._jobs: deque[_Job] = deque()
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="guard-model")
        self._seconds_per_text = 0.01  # running estimate, for Retry-After

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._worker = asyncio.get_running_loop().create_task(self._run(), name="guard-batcher")

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for job in self._jobs:
            if not job.future.done():
                job.future.set_exception(RuntimeError("server shutting down"))
        self._jobs.clear()
        self._model_thread.shutdown(wait=False, cancel_futures=True)

    def retry_after(self) -> int:
        """Seconds until the queue has likely drained, at least 1."""
        return max(1, round(self.pending * self._seconds_per_text + 0.5))

    async def submit(self, records: list[Record]) -> list[Verdict]:
        """Verdicts for `records`, in order. Raises QueueFull when the queue is full."""
        if not records:
            return []
        if self._wake is None:
            raise RuntimeError("MicroBatcher.start() was not awaited")
        if self.pending and self.pending + len(records) > self.max_queue:
            raise QueueFull(self.retry_after())
        job = _Job(records, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self.pending += len(records)
        self._wake.set()
        return await job.future

    def _queued(self) -> int:
        return sum(len(j.records) for j in self._jobs if not j.future.done())

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._wake.clear()
                await self._wake.wait()
            # Wait for company: until the batch is full or the oldest request has waited enough.
            deadline = self._jobs[0].arrived + self.max_wait
            while self._queued() < self.max_batch:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except TimeoutError:
                    break
            jobs = self._take()
            if not jobs:
                continue
            records = [r for j in jobs for r in j.records]
            start = time.perf_counter()
            try:
                verdicts = await loop.run_in_executor(self._model_thread, self.classify, records)
            except Exception as exc:
                await self._isolate(jobs, exc)
                continue
            elapsed = time.perf_counter() - start
            self._seconds_per_text = 0.8 * self._seconds_per_text + 0.2 * elapsed / len(records)
            if self.on_batch:
                self.on_batch(len(records))
            offset = 0
            for job in jobs:
                part = verdicts[offset : offset + len(job.records)]
                offset += len(job.records)
                if not job.future.done():  # a timed-out caller has gone
                    job.future.set_result(part)

    async def _isolate(self, jobs: list[_Job], exc: Exception) -> None:
        """A failed batch: retry each request alone, so one bad request cannot fail the others.
        What still fails is handed to its caller, who answers per --fail-closed."""
        loop = asyncio.get_running_loop()
        for job in jobs:
            if job.future.done():
                continue
            error = exc
            if len(jobs) > 1:
                try:
                    part = await loop.run_in_executor(
                        self._model_thread, self.classify, job.records
                    )
                except Exception as again:
                    error = again
                else:
                    if not job.future.done():
                        job.future.set_result(part)
                    continue
            if not job.future.done():
                job.future.set_exception(error)

    async def in_model_thread(self, fn: Callable[[], object]) -> object:
        """Run `fn` on the model thread (warm-up), serialised with the batches."""
        return await asyncio.get_running_loop().run_in_executor(self._model_thread, fn)

    def _take(self) -> list[_Job]:
        """Jobs from the front of the queue, up to `max_batch` texts (a bigger job goes alone)."""
        taken: list[_Job] = []
        count = 0
        while self._jobs:
            job = self._jobs[0]
            if job.future.done():  # cancelled by its caller's timeout
                self._jobs.popleft()
                self.pending -= len(job.records)
                continue
            if taken and count + len(job.records) > self.max_batch:
                break
            self._jobs.popleft()
            self.pending -= len(job.records)
            taken.append(job)
            count += len(job.records)
        return taken
