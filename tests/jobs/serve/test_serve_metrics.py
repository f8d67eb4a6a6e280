"""/metrics as Prometheus reads it: every scrape is parsed with prometheus_client's own parsers
(text format 0.0.4 and OpenMetrics), never by matching lines, and the counters are checked to
move by what the requests did."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
prometheus_client = pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from guardcli import load_guard  # noqa: E402
from guardcli.core.verdicts import Verdict  # noqa: E402
from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app  # noqa: E402
from guardcli.jobs.serve.prometheus import Metrics  # noqa: E402

from ...cli.test_docs import without  # noqa: E402

KEY = "metrics-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

# The README's list ("Metrics: ...") with the label names each series carries, and its type.
DOCUMENTED = {
    "guard_requests": ("counter", {"endpoint", "code"}),
    "guard_texts": ("counter", {"endpoint"}),
    "guard_flagged": ("counter", {"endpoint"}),
    "guard_errors": ("counter", {"kind"}),
    "guard_truncated": ("counter", {"endpoint"}),
    "guard_request_duration_seconds": ("histogram", {"endpoint"}),
    "guard_batch_size": ("histogram", set()),
    "guard_queue_depth": ("gauge", set()),
    "guard_ready": ("gauge", set()),
}
# The buckets /metrics has always exposed (base commit's serve/prometheus.py).
LATENCY_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
BATCH_BOUNDS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]


class ScriptedGuard:
    """A guard whose verdict is written in the text: "flag ..." scores 0.9, anything else 0.1."""

    name, variant, threshold, batch_size, fail_closed = "scripted", None, 0.5, 16, True
    labels = ("safe", "unsafe")

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def classify(self, items):
        return []

    def classify_records(self, records):
        time.sleep(self.delay)
        out = []
        for r in records:
            score = 0.9 if (r.text or "").startswith("flag") else 0.1
            out.append(Verdict(id=r.id, flagged=score >= 0.5, score=score, threshold=0.5))
        return out


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.02)


def scrape(url: str, **headers: str) -> dict[str, prometheus_client.Metric]:
    response = httpx.get(f"{url}/metrics", headers={**AUTH, **headers})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.text)}


def sample(families: dict, name: str, suffix: str = "", **labels: str) -> float:
    """A sample's value, 0 when its series does not exist yet (a labelled counter never
    incremented has no sample)."""
    for s in families[name].samples if name in families else []:
        if s.name == name + suffix and s.labels == labels:
            return s.value
    return 0.0


def server(guard, **options) -> BackgroundServer:
    return BackgroundServer(create_app(guard, ServeOptions(api_key=KEY, **options)))


@pytest.mark.slow
def test_documented_series_types_labels_and_buckets() -> None:
    with server(ScriptedGuard(), max_text_chars=20) as url:
        wait_ready(url)
        with httpx.Client(base_url=url, headers=AUTH) as client:
            client.post("/v1/moderations", json={"input": ["flag one", "a lighthouse"]})
            client.post("/v1/moderations", json={"input": "x " * 40})
            client.get("/nowhere")
        families = scrape(url)
    for name, (kind, labels) in DOCUMENTED.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, name
        assert family.documentation, f"{name} has no HELP"
        own = [s for s in family.samples if not s.name.endswith("_created")]
        assert own, f"{name} has no samples"
        for s in own:
            assert set(s.labels) - {"le"} == labels, (name, s.labels)
    bounds = {
        "guard_request_duration_seconds": LATENCY_BOUNDS,
        "guard_batch_size": BATCH_BOUNDS,
    }
    for name, expected in bounds.items():
        les = [s.labels["le"] for s in families[name].samples if s.name == f"{name}_bucket"]
        assert les[-1] == "+Inf"
        assert sorted({float(le) for le in les if le != "+Inf"}) == expected
    # Nothing outside the documented set (bar prometheus_client's *_created timestamps).
    assert {n for n in families if not n.endswith("_created")} == set(DOCUMENTED)


def test_counters_move_with_requests() -> None:
    texts = ["flag a", "a lighthouse", "flag b", "the tide", "flag c"]
    with server(ScriptedGuard(), max_text_chars=20) as url:
        wait_ready(url)
        before = scrape(url)
        assert sample(before, "guard_ready") == 1
        with httpx.Client(base_url=url, headers=AUTH) as client:
            answers = [client.post("/v1/moderations", json={"input": t}).json() for t in texts]
            many = client.post("/v1/moderations", json={"input": texts}).json()
            check = client.post("/check", json={"text": "flag " + "y" * 30}).json()
            assert client.post("/check", content=b"{nope").status_code == 400
            assert httpx.post(f"{url}/check", json={"text": "a"}).status_code == 401
            assert client.get("/nowhere").status_code == 404
        after = scrape(url)

    def moved(name: str, suffix: str = "", **labels: str) -> float:
        return sample(after, name, suffix, **labels) - sample(before, name, suffix, **labels)

    flagged = [r["flagged"] for a in answers for r in a["results"]]
    assert flagged == [t.startswith("flag") for t in texts]
    assert [r["flagged"] for r in many["results"]] == flagged
    assert check["decision"] == "block"

    assert moved("guard_requests", "_total", endpoint="moderations", code="200") == 6
    assert moved("guard_requests", "_total", endpoint="check", code="200") == 1
    assert moved("guard_requests", "_total", endpoint="check", code="400") == 1
    assert moved("guard_requests", "_total", endpoint="check", code="401") == 1
    assert moved("guard_texts", "_total", endpoint="moderations") == 2 * len(texts)
    assert moved("guard_texts", "_total", endpoint="check") == 1
    assert moved("guard_flagged", "_total", endpoint="moderations") == 2 * sum(flagged)
    assert moved("guard_flagged", "_total", endpoint="check") == 1
    assert moved("guard_truncated", "_total", endpoint="check") == 1  # over --max-text-chars
    assert moved("guard_truncated", "_total", endpoint="moderations") == 0
    assert moved("guard_errors", "_total", kind="bad_request") == 1
    assert moved("guard_errors", "_total", kind="unauthorized") == 1
    assert moved("guard_errors", "_total", kind="not_found") == 1
    # Every answered request was timed (the 404 never reached a route); the /metrics scrape
    # that produced `before` is timed too.
    timed = moved("guard_request_duration_seconds", "_count", endpoint="moderations")
    assert timed == 6
    assert moved("guard_request_duration_seconds", "_count", endpoint="metrics") == 1
    # Every judged text went through a model run, and no run held more texts than it could.
    assert moved("guard_batch_size", "_sum") == 2 * len(texts) + 1
    runs = moved("guard_batch_size", "_count")
    assert 1 <= runs <= len(texts) + 2
    assert sample(after, "guard_queue_depth") == 0


@pytest.mark.slow
def test_each_app_has_its_own_registry() -> None:
    """Two services in one process: no 'Duplicated timeseries' error, no shared counts, and the
    global default registry stays clean for the host application's own metrics."""
    with server(ScriptedGuard()) as first, server(ScriptedGuard()) as second:
        wait_ready(first)
        wait_ready(second)
        for _ in range(3):
            httpx.post(f"{first}/v1/moderations", json={"input": "flag"}, headers=AUTH)
        one, two = scrape(first), scrape(second)
    assert sample(one, "guard_texts", "_total", endpoint="moderations") == 3
    assert sample(two, "guard_texts", "_total", endpoint="moderations") == 0
    assert sample(one, "guard_flagged", "_total", endpoint="moderations") == 3
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "guard_" not in default


def test_openmetrics_when_the_scraper_asks() -> None:
    with server(ScriptedGuard()) as url:
        wait_ready(url)
        httpx.post(f"{url}/v1/moderations", json={"input": ["flag", "calm"]}, headers=AUTH)
        response = httpx.get(
            f"{url}/metrics",
            headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"},
        )
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(response.text)}  # strict: needs # EOF
    assert sample(families, "guard_texts", "_total", endpoint="moderations") == 2
    assert sample(families, "guard_flagged", "_total", endpoint="moderations") == 1
    assert families["guard_request_duration_seconds"].type == "histogram"


@pytest.mark.slow
def test_queue_depth_is_read_when_scraped() -> None:
    """Texts still queued behind a slow model show up in guard_queue_depth at scrape time."""
    import threading

    with server(ScriptedGuard(delay=0.5), max_batch=1) as url:
        wait_ready(url)
        posts = [
            threading.Thread(
                target=httpx.post,
                args=(f"{url}/v1/moderations",),
                kwargs={"json": {"input": "calm"}, "headers": AUTH, "timeout": 30},
            )
            for _ in range(4)
        ]
        for t in posts:
            t.start()
        time.sleep(0.25)  # the first is running, the others wait in the queue
        busy = sample(scrape(url), "guard_queue_depth")
        for t in posts:
            t.join()
        idle = sample(scrape(url), "guard_queue_depth")
    assert busy >= 1
    assert idle == 0


@pytest.mark.slow
def test_ready_stays_zero_for_a_broken_model(nan_model: Path) -> None:
    with server(load_guard(nan_model, variant="fp32")) as url:
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/readyz").json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert httpx.get(f"{url}/readyz").json()["status"] == "failed"
        assert sample(scrape(url), "guard_ready") == 0


def test_metrics_value_reads_the_registry() -> None:
    metrics = Metrics(queue_depth=lambda: 7)
    assert metrics.value("queue_depth") == 7
    assert metrics.value("errors_total", kind="timeout") == 0
    metrics.errors.labels(kind="timeout").inc(3)
    assert metrics.value("errors_total", kind="timeout") == 3
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    parsed = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert sample(parsed, "guard_errors", "_total", kind="timeout") == 3


@pytest.mark.slow
def test_serve_without_prometheus_client_says_what_to_install(tiny_model: Path) -> None:
    """Checked before the model loads, like Starlette and uvicorn: the `serve` extra brings it."""
    result = subprocess.run(
        [sys.executable, "-c", without("prometheus_client"), "serve", "-m", str(tiny_model)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "pip install 'guardcli[serve]'" in result.stderr and "Traceback" not in result.stderr
