"""Served streams' caches as rows of one pool updated in place (pool.py): concurrent streams of
different lengths, one evicted and re-prefilled, one rolled back by peek(), give the verdicts
each gets alone and the reference's; the pool grows past its first rows and capacity; a
forward that needs no growth copies no cache (the pool's memory stays where it is)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard
from guardcli.families.qwen3guard_stream.pool import PoolBatch
from guardcli.families.qwen3guard_stream.runners import OnnxRunner
from guardcli.families.qwen3guard_stream.served import SlotRunner
from guardcli.jobs.serve.streams import Coalescer

from .helpers import CONVERSATIONS, reference_verdicts

PROMPT = "tell me about a garden"
ANSWERS = [CONVERSATIONS[0][1], CONVERSATIONS[1][1] + " and more", CONVERSATIONS[2][1]]
PIECES = [2, 3, 7]  # characters per append: mostly one-token appends for the first stream


def split(text: str, n: int) -> list[str]:
    return [text[i : i + n] for i in range(0, len(text), n)]


def stream(engine, pieces_of: list[list[str]], *, evict: int = -1, peek: int = 0):
    """Streams appending together through the server's Coalescer (each round's appends meet),
    stream 1 evicted before round `evict`, stream 2 peeking after every `peek`th append:
    each stream's verdicts as (risk level, category, probabilities)."""
    # A generous wait: on a loaded machine the streams' threads reach the coalescer late.
    coalescer = Coalescer(engine.forward_batch, max_batch=8, max_wait_s=0.3)
    judges = [engine.judge(coalescer.feed) for _ in pieces_of]
    rounds = max(map(len, pieces_of))
    barrier = threading.Barrier(len(judges))
    out: list[list] = [[] for _ in judges]
    errors: list[BaseException] = []

    def one(i: int) -> None:
        judge, pieces = judges[i], pieces_of[i]
        try:
            with coalescer.working():
                judge.start(PROMPT)
            for r in range(rounds):
                barrier.wait()
                if i == 1 and r == evict:
                    assert judge.runner.evict() > 0
                if r < len(pieces):
                    with coalescer.working():
                        out[i] += judge.push(pieces[r])
                        if i == 2 and peek and r % peek == 0:
                            judge.peek()
            with coalescer.working():
                out[i] += judge.finish()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(judges))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    coalescer.stop()
    assert not errors, errors
    rows = [[(v.risk_level, v.category, v.probabilities) for v in got] for got in out]
    return rows, judges


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_concurrent_streams_on_the_pool_equal_each_alone_and_the_reference(
    stream_model: Path, variant: str, stream_reference, stream_tokenizer
) -> None:
    guard = load_guard(stream_model, variant=variant)
    engine = guard.stream_engine()
    batch = engine.forward_batch
    assert isinstance(batch, PoolBatch)
    pieces = [split(a, n) for a, n in zip(ANSWERS, PIECES, strict=True)]
    together, judges = stream(engine, pieces, evict=len(pieces[1]) // 2, peek=2)
    assert max(batch.forwards) >= 2  # one-token appends of several streams shared a forward
    assert [j.runner.reprefills for j in judges] == [0, 1, 0]
    lone = load_guard(stream_model, variant=variant).stream_engine()
    for i, text in enumerate(ANSWERS):
        (alone,), _ = stream(lone, [pieces[i]])
        assert [r[:2] for r in together[i]] == [r[:2] for r in alone]
        got = np.array([[*r[2].values()] for r in together[i]])
        want = np.array([[*r[2].values()] for r in alone])
        if variant == "int8":
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
        if variant == "fp32":
            _, expected, _ = reference_verdicts(stream_reference, stream_tokenizer, PROMPT, text)
            risk = [engine.maps["response_risk_level_map"][r] for r, _, _ in expected]
            assert [r[0] for r in together[i]] == risk


def ids(n: int, seed: int) -> list[int]:
    return [int(x) for x in np.random.default_rng(seed).integers(100, 150_000, n)]


@pytest.mark.slow
def test_the_pool_grows_in_rows_and_capacity_and_copies_nothing_otherwise(
    stream_model: Path,
) -> None:
    engine = load_guard(stream_model, variant="fp32").stream_engine()
    runner = engine.forward_batch.runner
    batch = PoolBatch(runner, rows=1, capacity=8)
    pool = batch.pool
    slots = [SlotRunner(lambda slot, new: batch([(slot, new)])[0]) for _ in range(3)]
    alone = [OnnxRunner(runner.path) for _ in slots]  # each stream on its own buffers
    prompts = [ids(5, 0), ids(9, 1), ids(3, 2)]
    for slot, own, prompt in zip(slots, alone, prompts, strict=True):
        np.testing.assert_allclose(slot.feed(prompt)[0], own.feed(prompt)[0], atol=1e-5)
    assert (pool.rows, pool.capacity) == (4, 16)  # rows 1 -> 2 -> 4, capacity 8 -> 16
    assert [s.row for s in slots] == [0, 1, 2]
    assert all(s.cache_bytes == pool.row_bytes > 0 for s in slots)

    seeds = iter(range(100, 1000))

    def step(k: int) -> None:
        news = [ids(k, next(seeds)) for _ in slots]
        got = batch(list(zip(slots, news, strict=True)))
        for new, mine, own in zip(news, got, alone, strict=True):
            for a, b in zip(mine, own.feed(new), strict=True):
                np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)

    memory = [(a, a.ctypes.data) for a in pool.arrays]
    batch.forwards.clear()
    step(1)
    step(1)
    assert batch.forwards == {3: 2}  # one forward for the three rows, twice
    assert [(a, a.ctypes.data) for a in pool.arrays] == memory  # no cache copied or moved
    step(6)  # several tokens beside a cache: one row at a time, past the capacity
    assert pool.capacity == 32 and batch.forwards[1] == 3
    batch.multi = "steps"
    batch.forwards.clear()
    step(3)  # the same as three one-token forwards over the rows
    assert batch.forwards == {3: 3}
    assert [s.length for s in slots] == [16, 20, 14]


@pytest.mark.slow
def test_an_evicted_or_dropped_stream_frees_its_row(stream_model: Path) -> None:
    runner = load_guard(stream_model, variant="fp32").stream_engine().forward_batch.runner
    batch = PoolBatch(runner, rows=2, capacity=16)
    slots = [SlotRunner(lambda slot, new: batch([(slot, new)])[0]) for _ in range(2)]
    for slot in slots:
        slot.feed(ids(4, 7))
    first, second = slots
    assert first.evict() == batch.pool.row_bytes and first.cache_bytes == 0
    assert batch.pool.owner(0) is None and first.row is None
    del slots, second, slot
    gc.collect()
    assert batch.pool.owner(1) is None  # a stream that is gone holds no row
    logits = first.feed([5])  # re-prefilled from its kept ids into the lowest free row
    assert first.row == 0 and first.reprefills == 1 and first.length == 5
    assert logits[0].shape[0] == 1  # the logits of the new token only
    assert batch.pool.rows == 2  # no row was added


def test_a_closed_stream_gives_its_row_back_at_once(stream_model: Path) -> None:
    import asyncio

    from guardcli.jobs.serve.prometheus import Metrics
    from guardcli.jobs.serve.stream_service import StreamOptions, StreamService

    engine = load_guard(stream_model, variant="int8").stream_engine()
    pool = engine.forward_batch.pool

    async def run() -> None:
        service = StreamService(engine, StreamOptions(), Metrics(streams=True))
        try:
            first = await service.open([{"role": "user", "content": PROMPT}])
            row = first.slot.row
            assert pool.owner(row) is first.slot
            service.close(first.id)
            assert pool.owner(row) is None  # no garbage collection needed
            second = await service.open([{"role": "user", "content": PROMPT}])
            assert second.slot.row == row
        finally:
            service.stop()

    gc.disable()
    try:
        asyncio.run(run())
    finally:
        gc.enable()


@pytest.mark.slow
def test_the_pool_gives_memory_back_once_its_streams_are_gone(stream_model: Path) -> None:
    runner = load_guard(stream_model, variant="fp32").stream_engine().forward_batch.runner
    batch = PoolBatch(runner, rows=1, capacity=8)
    pool = batch.pool
    slots = [SlotRunner(lambda slot, new: batch([(slot, new)])[0]) for _ in range(5)]
    for k, slot in enumerate(slots):
        slot.feed(ids(3, k))
    slots[0].feed(ids(60, 9))  # one long stream: capacity 8 -> 64 for every row
    assert (pool.rows, pool.capacity) == (8, 64)
    for slot in slots[:4]:
        slot.evict()
    own = OnnxRunner(runner.path)
    own.feed(slots[4].ids)
    new = ids(1, 11)
    np.testing.assert_allclose(slots[4].feed(new)[0], own.feed(new)[0], atol=1e-5)
    # Row 4 still in use (all 8 rows kept: 5 > 8 / 4); its 4 positions need 8 of the 64.
    assert (pool.rows, pool.capacity) == (8, 8)
    slots[4].evict()
    slots[0].feed([5])  # re-prefilled alone in row 0: 64 positions, the capacity grows again
    assert (pool.rows, pool.capacity, slots[0].row) == (2, 64, 0)  # rows: a quarter or less
