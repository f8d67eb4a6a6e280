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
