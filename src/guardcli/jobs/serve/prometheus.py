"""The service's Prometheus metrics, kept and exposed by prometheus_client.

Each GuardService owns a `CollectorRegistry` of its own rather than the library's global default
one: tests, notebooks and benchmarks create several apps in one process, and each app's /metrics
must show only its own traffic (and re-registering the same names globally would raise).

prometheus_client also exports a `<name>_created` timestamp beside each counter and histogram;
set PROMETHEUS_DISABLE_CREATED_SERIES=true in the server's environment to drop them. That switch
is process-wide, so a library that may be embedded leaves it to whoever runs the process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

PREFIX = "guard"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """The series the README documents, in one registry per service:

    guard_requests_total{endpoint,code}, guard_texts_total{endpoint},
    guard_flagged_total{endpoint}, guard_errors_total{kind}, guard_truncated_total{endpoint},
    guard_request_duration_seconds{endpoint} (histogram), guard_batch_size (histogram),
    guard_queue_depth, guard_ready; for stream families: guard_streams_open,
    guard_stream_cache_bytes, guard_stream_evictions_total{reason},
    guard_stream_token_seconds (histogram), guard_stream_batch_size (histogram).
    """

    def __init__(self, queue_depth: Callable[[], float] | None = None, *, streams: bool = False):
        # Imported here, like Starlette and uvicorn: `guard --help` never pays for it, and a
        # missing `serve` extra is reported by `serve.server._uvicorn` before any app is built.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        r, p = self.registry, PREFIX
        self.requests = Counter(
            "requests_total",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "code"],
            namespace=p,
            registry=r,
        )
        self.texts = Counter(
            "texts_total", "Texts judged, by endpoint.", ["endpoint"], namespace=p, registry=r
        )
        self.flagged = Counter(
            "flagged_total",
            "Texts flagged (or blocked), by endpoint.",
            ["endpoint"],
            namespace=p,
            registry=r,
        )
        self.errors = Counter(
            "errors_total",
            "Errors by kind: timeout, runtime, queue_full, bad_request, ...",
            ["kind"],
            namespace=p,
            registry=r,
        )
        self.truncated = Counter(
            "truncated_total",
            "Texts cut to --max-text-chars or the model's max length.",
            ["endpoint"],
            namespace=p,
            registry=r,
        )
        self.request_duration = Histogram(
            "request_duration_seconds",
            "Request latency by endpoint.",
            ["endpoint"],
            namespace=p,
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "batch_size",
            "Texts per model run after coalescing.",
            namespace=p,
            registry=r,
            buckets=BATCH_BUCKETS,
        )
        self.queue_depth = Gauge(
            "queue_depth", "Texts waiting for the model.", namespace=p, registry=r
        )
        if queue_depth is not None:
            # Read at scrape time, so /metrics never shows a stale depth.
            self.queue_depth.set_function(queue_depth)
        self.ready = Gauge("ready", "1 when the model is loaded and warm.", namespace=p, registry=r)
        if streams:
            self._stream_series(r)

    def _stream_series(self, r: CollectorRegistry) -> None:
        """Streams (/v1/streams and LiteLLM's growing replies), for families that judge them."""
        from prometheus_client import Counter, Gauge, Histogram

        p = PREFIX
        self.streams_open = Gauge("streams_open", "Open streams.", namespace=p, registry=r)
        self.stream_cache_bytes = Gauge(
            "stream_cache_bytes", "Bytes of KV cache held by open streams.", namespace=p, registry=r
        )
        self.stream_evictions = Counter(
            "stream_evictions",
            "Stream KV caches dropped (rebuilt on next use), by reason: ttl, memory.",
            ["reason"],
            namespace=p,
            registry=r,
        )
        self.stream_token_seconds = Histogram(
            "stream_token_seconds",
            "Per-token latency of stream appends (an append's time over its tokens).",
            namespace=p,
            registry=r,
            buckets=TOKEN_BUCKETS,
        )
        self.stream_batch_size = Histogram(
            "stream_batch_size",
            "Streams run together in one forward.",
            namespace=p,
            registry=r,
            buckets=BATCH_BUCKETS,
        )

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when the series does not exist yet), for tests and logs.
        `name` is the exposed sample name without the prefix, e.g. "requests_total"."""
        found = self.registry.get_sample_value(f"{PREFIX}_{name}", labels)
        return 0.0 if found is None else found

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition body and its content type, negotiated from the scraper's Accept
        header: OpenMetrics when asked for, else Prometheus text format 0.0.4."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
