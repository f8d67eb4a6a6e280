"""`guard serve`'s verdict cache: repeats are answered on the event loop, without queueing.

One cache per service, on its guard (`Guard.verdict_cache`), so every endpoint shares it where
the key is equal (the same model input, whichever protocol carried it). Misses go through the
batcher, whose `Guard.judge_records` stores their verdicts and copies repeats within a batch.
Its state is exposed in /metrics, read at scrape time: guard_cache_hits_total,
guard_cache_misses_total, guard_cache_entries, guard_cache_bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from guardcli.core.verdict_cache import VerdictCache
from guardcli.core.verdicts import Record, Verdict
from guardcli.families import Guard
from guardcli.families.cached import lookup

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

Submit = Callable[[list[Record]], Awaitable[list[Verdict]]]


def attach(guard: Any, cache_mb: float | None) -> VerdictCache | None:
    """Give `guard` a cache of `cache_mb` MiB (None: no cache; a stand-in that is not a Guard
    has none either)."""
    if cache_mb is None or not isinstance(guard, Guard):
        return None
    guard.verdict_cache = VerdictCache(max_bytes=int(cache_mb * 1024 * 1024))
    return guard.verdict_cache


async def judge_cached(guard: Guard, records: list[Record], submit: Submit) -> list[Verdict]:
    """Cached verdicts at once; the rest from `submit`, in order."""
    assert guard.verdict_cache is not None
    found = lookup(guard, guard.verdict_cache, records)
    misses = [r for r, v in zip(records, found, strict=True) if v is None]
    judged: Iterator[Verdict] = iter(await submit(misses) if misses else [])
    return [v if v is not None else next(judged) for v in found]


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
