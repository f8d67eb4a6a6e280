"""`guard serve`'s verdict cache: repeats, across endpoints, answered once and identically."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from guardcli import load_guard  # noqa: E402
from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app  # noqa: E402

from .test_serve_metrics import AUTH, KEY, wait_ready  # noqa: E402

# Slow as a whole (a background server and every endpoint twice: ~3 s); `make test` runs it.
pytestmark = pytest.mark.slow

TEXTS = ["a lighthouse at dusk", "bread recipes", "a lighthouse at dusk", "tide tables"]


def _answers(url: str) -> list:
    with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
        out = [client.post("/v1/moderations", json={"input": TEXTS}).json()["results"]]
        records = [{"id": i, "text": t} for i, t in enumerate(TEXTS)]
        out.append(client.post("/v1/classify", json={"records": records}).json())
        out.append(client.post("/v1/moderations", json={"input": TEXTS[0]}).json()["results"])
        out.append(client.post("/v1/classify", json={"records": records[::-1]}).json())
    return out


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers=AUTH).text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("guard_cache")
    }


def test_serve_cache_is_shared_across_endpoints_and_changes_no_answer(tiny_model: Path):
    guard = load_guard(tiny_model, variant="fp32")
    runs = {}
    for cache_mb in (None, 1.0):
        app = create_app(guard, ServeOptions(api_key=KEY, cache_mb=cache_mb))
        with BackgroundServer(app) as url:
            wait_ready(url)
            runs[cache_mb] = (_answers(url), _metrics(url))
        guard.verdict_cache = None
    (plain, none), (cached, metrics) = runs[None], runs[1.0]
    assert cached == plain
    assert none == {}  # no cache, no cache series
    # 4 requests, 13 texts, 3 distinct (+ the self-check prompt, a miss at start-up)
    assert metrics["guard_cache_misses_total"] == 4
    assert metrics["guard_cache_hits_total"] == 13 - 3
    assert metrics["guard_cache_entries"] == 4
    assert 0 < metrics["guard_cache_bytes"] <= 1024 * 1024


def _counting_submit(guard, judged: list[str], fail_first: bool = False):
    """A stand-in for the batcher: yields to the loop (as a queued batch does), records what
    it was given, then judges it with the guard."""
    import asyncio

    calls = {"n": 0}

    async def submit(records):
        calls["n"] += 1
        await asyncio.sleep(0.05)
        judged.extend(r.text for r in records)
        if fail_first and calls["n"] == 1:
            raise RuntimeError("the model run failed")
        return guard.judge_records(records)

    return submit


def test_a_repeat_in_flight_waits_for_the_first_verdict(tiny_model: Path):
    import asyncio

    from guardcli.core.verdict_cache import VerdictCache
    from guardcli.core.verdicts import Record
    from guardcli.jobs.serve.verdict_cache import InFlight, judge_cached

    guard = load_guard(tiny_model, variant="fp32")
    first = [Record(id=f"a{i}", text=t) for i, t in enumerate(TEXTS)]
    second = [Record(id=f"b{i}", text=t) for i, t in enumerate(["tide tables", "a new text"])]
    expected = guard.classify_records(first + second)

    guard.verdict_cache = VerdictCache()
    judged: list[str] = []
    inflight = InFlight()
    submit = _counting_submit(guard, judged)

    async def both():
        return await asyncio.gather(
            judge_cached(guard, first, submit, inflight),
            judge_cached(guard, second, submit, inflight),
        )

    got_first, got_second = asyncio.run(both())
    assert sorted(judged) == sorted(set(TEXTS) | {"a new text"})  # each text judged once
    assert [v.to_dict() for v in got_first + got_second] == [v.to_dict() for v in expected]
    assert inflight.pending == {}
    assert guard.verdict_cache.stats().hits == 2  # the repeat within `first`, and "tide tables"


def test_when_the_first_judging_fails_a_waiting_repeat_is_judged_itself(tiny_model: Path):
    import asyncio

    from guardcli.core.verdict_cache import VerdictCache
    from guardcli.core.verdicts import Record
    from guardcli.jobs.serve.verdict_cache import InFlight, judge_cached

    guard = load_guard(tiny_model, variant="fp32")
    guard.verdict_cache = VerdictCache()
    judged: list[str] = []
    inflight = InFlight()
    submit = _counting_submit(guard, judged, fail_first=True)
    owner, waiter = [Record(id="x", text="bread recipes")], [Record(id="y", text="bread recipes")]

    async def both():
        return await asyncio.gather(
            judge_cached(guard, owner, submit, inflight),
            judge_cached(guard, waiter, submit, inflight),
            return_exceptions=True,
        )

    failed, (verdict,) = asyncio.run(both())
    assert isinstance(failed, RuntimeError)
    assert judged == ["bread recipes", "bread recipes"]
    assert verdict.id == "y" and verdict.error is None
    assert verdict.to_dict() | {"id": "x"} == guard.classify_records(owner)[0].to_dict()
    assert inflight.pending == {}
