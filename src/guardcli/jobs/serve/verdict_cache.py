"""`guard serve`'s verdict cache: repeats are answered on the event loop, without queueing.

One cache per service, on its guard (`Guard.verdict_cache`), so every endpoint shares it where
the key is equal (the same model input, whichever protocol carried it). Misses go through the
batcher, whose `Guard.judge_records` stores their verdicts and copies repeats within a batch.
Its state is exposed in /metrics, read at scrape time: guard_cache_hits_total,
guard_cache_misses_total, guard_cache_entries, guard_cache_bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from guardcli.core.verdict_cache import VerdictCache
from guardcli.core.verdicts import Record, Verdict
from guardcli.families import Guard
from guardcli.families.cached import as_record, guard_identity, record_key

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

Submit = Callable[[list[Record]], Awaitable[list[Verdict]]]


def attach(guard: Any, cache_mb: float | None) -> VerdictCache | None:
    """Give `guard` a cache of `cache_mb` MiB (None: no cache; a stand-in that is not a Guard
    has none either)."""
    if cache_mb is None or not isinstance(guard, Guard):
        return None
    guard.verdict_cache = VerdictCache.of_mib(cache_mb)
    return guard.verdict_cache


class InFlight:
    """The keys being judged now, each with the future its verdict will be set on (None when
    the judging failed: whoever waits then judges its record itself)."""

    def __init__(self) -> None:
        self.pending: dict[bytes, asyncio.Future[Verdict | None]] = {}


async def judge_cached(
    guard: Guard, records: list[Record], submit: Submit, inflight: InFlight
) -> list[Verdict]:
    """Cached verdicts at once; a record whose key is being judged (in `inflight`) waits for
    that verdict; the rest from `submit`, in order."""
    cache = guard.verdict_cache
    assert cache is not None
    identity = guard_identity(guard)
    out: list[Verdict | None] = [None] * len(records)
    misses: list[tuple[int, bytes | None]] = []
    waits: list[tuple[int, asyncio.Future[Verdict | None]]] = []
    owned: dict[bytes, asyncio.Future[Verdict | None]] = {}
    for i, record in enumerate(records):
        key = record_key(guard, identity, record)
        if key is not None:
            out[i] = cache.peek(key, record)
            if out[i] is not None:
                continue
            if key in inflight.pending:
                waits.append((i, inflight.pending[key]))
                continue
            owned[key] = inflight.pending[key] = asyncio.get_running_loop().create_future()
        misses.append((i, key))
    judged: list[Verdict] = []
    try:
        judged = await submit([records[i] for i, _ in misses]) if misses else []
    finally:
        verdict_of = {key: v for (_, key), v in zip(misses, judged, strict=False)}
        for key, future in owned.items():
            del inflight.pending[key]
            future.set_result(verdict_of.get(key))
    for (i, _), verdict in zip(misses, judged, strict=True):
        out[i] = verdict
    again = []
    for i, future in waits:
        first = await asyncio.shield(future)
        if first is None or first.error is not None:
            again.append(i)  # judged on its own, as a repeat within one batch is
        else:
            out[i] = as_record(first, records[i])
            cache.count_hit()
    if again:
        for i, verdict in zip(again, await submit([records[i] for i in again]), strict=True):
            out[i] = verdict
    return out  # type: ignore[return-value]


def register_metrics(registry: CollectorRegistry, cache: VerdictCache) -> None:
    """The cache's counters and gauges, read from `cache` whenever /metrics is scraped."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class CacheCollector(Collector):
        def collect(self):
            stats = cache.stats()
            yield CounterMetricFamily(
                "guard_cache_hits", "Texts answered from the verdict cache.", value=stats.hits
            )
            yield CounterMetricFamily(
                "guard_cache_misses",
                "Texts the verdict cache did not hold (judged by the model).",
                value=stats.misses,
            )
            yield GaugeMetricFamily(
                "guard_cache_entries", "Verdicts in the cache.", value=stats.entries
            )
            yield GaugeMetricFamily(
                "guard_cache_bytes",
                "Estimated memory the cached verdicts hold (capped by --cache-mb).",
                value=stats.bytes,
            )

    registry.register(CacheCollector())
