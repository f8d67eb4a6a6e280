"""The micro-batcher and the protocol shapes on their own: no server, no model."""

from __future__ import annotations

import asyncio
import time

import pytest

from guardcli.core.verdicts import Record, Verdict
from guardcli.jobs.serve.batcher import MicroBatcher, QueueFull
from guardcli.jobs.serve.protocols import (
    Limits,
    Policy,
    guardrail_request,
    guardrail_response,
    moderation_result,
    rethreshold,
)

POLICY = Policy(model="m", variant="int8", threshold=0.5)


def echo(batches: list[int]):
    def classify(records: list[Record]) -> list[Verdict]:
        batches.append(len(records))
        return [Verdict(id=r.id, flagged=False, score=float(r.text or 0)) for r in records]

    return classify


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_coalesce_up_to_max_batch_in_order() -> None:
    batches: list[int] = []

    async def main() -> list[list[Verdict]]:
        batcher = MicroBatcher(echo(batches), max_batch=8, max_wait_ms=50)
        await batcher.start()
        try:
            jobs = [batcher.submit([Record(id=i, text=str(i))]) for i in range(20)]
            return await asyncio.gather(*jobs)
        finally:
            await batcher.stop()

    results = run(main())
    assert [r[0].id for r in results] == list(range(20))
    assert [r[0].score for r in results] == [float(i) for i in range(20)]
    assert batches == [8, 8, 4]


def test_a_lone_request_waits_at_most_max_wait_and_big_requests_go_alone() -> None:
    batches: list[int] = []

    async def main() -> float:
        batcher = MicroBatcher(echo(batches), max_batch=4, max_wait_ms=30)
        await batcher.start()
        try:
            start = time.perf_counter()
            await batcher.submit([Record(id=1, text="1")])
            waited = time.perf_counter() - start
            big = [Record(id=i, text="1") for i in range(10)]
            out = await asyncio.gather(batcher.submit(big), batcher.submit(big[:1]))
            assert [len(o) for o in out] == [10, 1]
            return waited
        finally:
            await batcher.stop()

    waited = run(main())
    assert 0.02 <= waited < 1.0
    assert batches == [1, 10, 1]


def test_full_queue_and_failures() -> None:
    async def main() -> None:
        def broken(records: list[Record]) -> list[Verdict]:
            if any(r.text == "bad" for r in records):
                raise RuntimeError("boom")
            time.sleep(0.05)
            return [Verdict(id=r.id, flagged=False, score=0.0) for r in records]

        batcher = MicroBatcher(broken, max_batch=4, max_wait_ms=20, max_queue=3)
        await batcher.start()
        try:
            ok = batcher.submit([Record(id=1, text="a"), Record(id=2, text="b")])
            bad = batcher.submit([Record(id=3, text="bad")])
            done = await asyncio.gather(ok, bad, return_exceptions=True)
            # One bad request fails alone; its batch-mate still gets verdicts.
            assert [v.id for v in done[0]] == [1, 2]
            assert isinstance(done[1], RuntimeError)
            first = asyncio.ensure_future(
                batcher.submit([Record(id=i, text="x") for i in range(3)])
            )
            await asyncio.sleep(0)
            with pytest.raises(QueueFull) as full:
                await batcher.submit([Record(id=9, text="y")])
            assert full.value.retry_after >= 1
            await first
        finally:
            await batcher.stop()

    run(main())


def test_guardrail_uses_structured_messages_only_for_dialogue_families() -> None:
    body = {
        "input_type": "request",
        "texts": ["hello", "again"],
        "structured_messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hello"},
        ],
        "additional_provider_specific_params": {"threshold": 0.9},
    }
    records, threshold = guardrail_request(body, POLICY, Limits())
    assert [r.text for r in records] == ["hello", "again"] and threshold == 0.9
    dialogue = Policy(model="d", variant=None, threshold=0.5, accepts_messages=True)
    records, _ = guardrail_request(body, dialogue, Limits())
    assert len(records) == 1 and records[0].messages == body["structured_messages"]
    response = {**body, "input_type": "response", "texts": ["a reply"]}
    records, _ = guardrail_request(response, dialogue, Limits())
    assert records[0].messages[-1] == {"role": "assistant", "content": "a reply"}
    bad = {**body, "additional_provider_specific_params": {"threshold": "high"}}
    with pytest.raises(ValueError, match="threshold must be a number"):
        guardrail_request(bad, POLICY, Limits())


def test_request_threshold_applies_to_binary_scores_only() -> None:
    binary = Verdict(id=1, flagged=False, score=0.3, threshold=0.5, label="safe")
    moved = rethreshold(binary, 0.25, POLICY)
    assert (moved.flagged, moved.threshold, moved.label) == (True, 0.25, "unsafe")
    multilabel = Verdict(
        id=1, flagged=True, score=0.7, threshold=None, categories={"Cyber": {"score": 0.7}}
    )
    assert rethreshold(multilabel, 0.9, POLICY) is multilabel


def test_multilabel_categories_and_blocked_reason() -> None:
    verdict = Verdict(
        id=1,
        flagged=True,
        score=0.8,
        threshold=None,
        categories={
            "Cyber": {"score": 0.8, "flagged": True},
            "Privacy": {"score": 0.1, "flagged": False},
        },
    )
    result = moderation_result(verdict, POLICY)
    assert result["categories"] == {"Cyber": True, "Privacy": False}
    assert result["category_scores"] == {"Cyber": 0.8, "Privacy": 0.1}
    answer = guardrail_response([verdict], POLICY)
    assert answer["action"] == "BLOCKED"
    assert answer["blocked_reason"] == "Blocked by guard m (int8): text 1: score 0.8000 (Cyber)"
