"""The service behind the HTTP app: one Guard, its micro-batcher, policy, metrics and limits."""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from guardcli.core import registry
from guardcli.core.verdict_cache import DEFAULT_CACHE_MB
from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.jobs.serve import protocols, verdict_cache
from guardcli.jobs.serve.batcher import MicroBatcher, QueueFull
from guardcli.jobs.serve.json_body import BadBody, dumps, parse_body
from guardcli.jobs.serve.prometheus import Metrics
from guardcli.jobs.serve.protocols import Limits, Policy
from guardcli.jobs.serve.stream_service import StreamOptions, StreamService

if TYPE_CHECKING:
    from starlette.requests import Request

    from guardcli.families import Guard

log = logging.getLogger("guardcli.serve")


@dataclass(frozen=True)
class ServeOptions:
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 1024  # texts waiting; beyond this, 503 + Retry-After
    timeout_s: float = 30.0  # per request, queueing included
    max_body_bytes: int = 1 << 20
    max_text_chars: int = 32_000  # longer texts are cut and marked truncated
    max_items: int = 256  # texts per request
    api_key: str | None = None
    fail_closed: bool = True
    allow_unjudged: bool = False  # images, audio: pass them (with a note) instead of blocking
    stream_cache_mb: float = 1024.0  # KV caches of open streams, together (LRU beyond it)
    stream_ttl_s: float = 300.0  # an idle stream's cache is dropped (rebuilt on next use)
    stream_expire_s: float = 3600.0  # an idle stream is closed
    cache_mb: float | None = DEFAULT_CACHE_MB  # the verdict cache's cap; None: no cache


# A prompt any working guard gives a finite score; run once at start (see GuardService).
SELF_CHECK = "What time does the library open on Sundays?"
# Absolute paths (POSIX, Windows, home): never shown to clients, who need not know the layout.
_PATH = re.compile(r"(?<![\w.:/])(?:~|[A-Za-z]:)?(?:[/\\][^\s'\"()\[\],;]+)+")


def redact(message: str) -> str:
    """`message` with file paths replaced by <path>: for answers to clients (the log keeps the
    full text)."""
    return _PATH.sub("<path>", message)


class HTTPError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def policy_for(guard: Guard, fail_closed: bool, allow_unjudged: bool = False) -> Policy:
    labels = getattr(guard, "labels", None)
    positive = str(labels[1]) if isinstance(labels, tuple) and len(labels) == 2 else "unsafe"
    return Policy(
        model=guard.name,
        variant=guard.variant,
        threshold=guard.threshold,
        positive_class=positive,
        accepts_messages=bool(getattr(guard, "accepts_messages", False)),
        fail_closed=fail_closed,
        allow_unjudged=allow_unjudged,
        openai=_openai_categories(guard),
    )


def _openai_categories(guard: Guard) -> dict[str, tuple[str, ...]]:
    family = getattr(guard, "family", None)
    known = registry.families().get(family) if isinstance(family, str) else None
    mapping = known.openai_categories if known is not None else {}
    return {name.lower(): tuple(targets) for name, targets in mapping.items()}


class GuardService:
    """The state behind the routes: the guard, its batcher, the metrics."""

    def __init__(self, guard: Guard, options: ServeOptions):
        self.guard = guard
        self.options = options
        self.limits = Limits(max_text_chars=options.max_text_chars, max_items=options.max_items)
        # Its own registry (see prometheus.py); the queue depth is read when scraped.
        # Families with token-level verdicts judge streams too (/v1/streams, LiteLLM replies).
        self.judges_streams = callable(getattr(guard, "stream_engine", None))
        self.metrics = Metrics(
            queue_depth=lambda: self.batcher.pending, streams=self.judges_streams
        )
        # One coalesced group is one model call unless the token budget splits it.
        guard.batch_size = max(guard.batch_size, options.max_batch)
        # Bad records (/v1/classify) follow the same rule as texts the model failed on.
        guard.fail_closed = options.fail_closed
        cache = verdict_cache.attach(guard, options.cache_mb)
        if cache is not None:
            verdict_cache.register_metrics(self.metrics.registry, cache)
        self.inflight = verdict_cache.InFlight()
        self.batcher = MicroBatcher(
            guard.judge_records if cache is not None else guard.classify_records,
            max_batch=options.max_batch,
            max_wait_ms=options.max_wait_ms,
            max_queue=options.max_queue,
            on_batch=lambda n: self.metrics.batch_size.observe(n),
        )
        self.ready = False
        self.load_error: str | None = None
        self._streams: StreamService | None = None
        self._policy: Policy | None = None

    @property
    def policy(self) -> Policy:
        # Built after warm-up: the positive class may come from the model's config.
        if self._policy is None:
            self._policy = policy_for(
                self.guard, self.options.fail_closed, self.options.allow_unjudged
            )
        return self._policy

    async def start(self) -> None:
        await self.batcher.start()
        asyncio.get_running_loop().create_task(self._warm_up())

    async def _warm_up(self) -> None:
        """Load the model and run the self-check prompt: a guard whose score is not a finite
        number is broken, and /readyz says so (failed, 503) so that load balancers route
        around it. Requests that still reach it get error verdicts: blocked when failing closed.
        """
        try:
            verdicts = await self.batcher.in_model_thread(lambda: self.guard.classify([SELF_CHECK]))
        except Exception as exc:
            # /readyz is unauthenticated: it says what failed, the log says where.
            self.load_error = "the model failed to load or to run; the server log has details"
            log.error("model failed to load: %s: %s", type(exc).__name__, exc)
            return
        first = verdicts[0] if isinstance(verdicts, list) and verdicts else None
        error = first.error if isinstance(first, Verdict) else None
        if error is not None and error.type == "non_finite_score":
            self.load_error = (
                "self-check failed: the model's score for a test prompt is not a finite number "
                "(NaN or infinity); the model or its variant is broken"
            )
            log.error("%s", self.load_error)
            return
        if error is not None:
            log.warning("self-check prompt could not be judged: %s: %s", error.type, error.message)
        self.ready = True
        self.metrics.ready.set(1)
        log.info("%s (%s) ready", self.guard.name, self.guard.variant)

    async def stop(self) -> None:
        await self.batcher.stop()
        if self._streams is not None:
            self._streams.stop()

    def stream_service(self) -> StreamService:
        """The streams of a guard that judges them, started on first use."""
        if self._streams is None:
            o = self.options
            options = StreamOptions(
                cache_mb=o.stream_cache_mb,
                ttl_s=o.stream_ttl_s,
                expire_s=o.stream_expire_s,
                max_batch=o.max_batch,
                max_wait_ms=o.max_wait_ms,
            )
            engine = getattr(self.guard, "stream_engine")()  # noqa: B009 (a family hook)
            self._streams = StreamService(engine, options, self.metrics)
        return self._streams

    # ------------------------------------------------------------ judging

    async def judge(
        self, records: list[Record], threshold: float | None, endpoint: str
    ) -> list[Verdict]:
        """Verdicts for records, in order; never raises for model trouble (see fail_closed)."""
        clipped = [protocols.clip(r, self.limits) for r in records]
        try:
            verdicts = await asyncio.wait_for(self._submit(records), timeout=self.options.timeout_s)
        except QueueFull as full:
            self.metrics.errors.labels(kind="queue_full").inc()
            raise HTTPError(
                503,
                "The guard is busy: its queue is full.",
                "queue_full",
                {"Retry-After": str(full.retry_after)},
            ) from None
        except TimeoutError:
            verdicts = self._failed(
                records, f"timed out after {self.options.timeout_s:g}s", "timeout"
            )
        except Exception as exc:
            log.error("model run failed: %s: %s", type(exc).__name__, exc)
            verdicts = self._failed(records, redact(f"{type(exc).__name__}: {exc}"), "runtime")
        out = []
        for record, verdict, cut in zip(records, verdicts, clipped, strict=True):
            verdict = self._strict(record, verdict)
            verdict = protocols.rethreshold(verdict, threshold, self.policy)
            if cut and verdict.error is None:
                verdict = replace(verdict, truncated=True)
            out.append(verdict)
        self._count(out, endpoint)
        return out

    def _submit(self, records: list[Record]) -> Awaitable[list[Verdict]]:
        if getattr(self.guard, "verdict_cache", None) is None:
            return self.batcher.submit(records)
        return verdict_cache.judge_cached(self.guard, records, self.batcher.submit, self.inflight)

    def _strict(self, record: Record, verdict: Verdict) -> Verdict:
        """A verdict that strict JSON cannot carry (a NaN score that slipped past the family,
        text that is not Unicode) is no verdict: it becomes an error, blocked when failing
        closed, rather than a 500 or an invalid answer."""
        try:
            dumps(verdict.to_dict())
        except (ValueError, UnicodeEncodeError):
            log.error("verdict for %r is not strict JSON (non-finite score?)", record.id)
            error = RecordError(
                "non_finite_score",
                "the model produced a verdict that is not a finite number or not valid text",
                record.line,
            )
            return Verdict.failed(record, error, fail_closed=self.options.fail_closed)
        return verdict

    def _failed(self, records: list[Record], message: str, kind: str) -> list[Verdict]:
        self.metrics.errors.labels(kind=kind).inc(len(records))
        action = "blocking" if self.options.fail_closed else "NOT blocking (--fail-open)"
        log.warning("%d text(s) could not be judged (%s); %s them", len(records), message, action)
        return [protocols.failed_verdict(r, message, self.policy) for r in records]

    def _count(self, verdicts: list[Verdict], endpoint: str) -> None:
        m = self.metrics
        m.texts.labels(endpoint=endpoint).inc(len(verdicts))
        flagged = sum(protocols.decision(v, self.policy) for v in verdicts)
        if flagged:
            m.flagged.labels(endpoint=endpoint).inc(flagged)
        truncated = sum(bool(v.truncated) for v in verdicts)
        if truncated:
            m.truncated.labels(endpoint=endpoint).inc(truncated)
        bad = sum(v.error is not None and v.error.type != "internal" for v in verdicts)
        if bad:
            m.errors.labels(kind="record").inc(bad)

    # ------------------------------------------------------------ HTTP plumbing

    def authorised(self, request: Request) -> bool:
        key = self.options.api_key
        if not key:
            return True
        given = request.headers.get("x-api-key", "")
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), key.encode())

    async def body(self, request: Request) -> Any:
        limit = self.options.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise HTTPError(413, f"The request body is over {limit} bytes.", "too_large")
        from starlette.requests import ClientDisconnect

        data = bytearray()
        try:
            async for chunk in request.stream():
                data += chunk
                if len(data) > limit:
                    raise HTTPError(413, f"The request body is over {limit} bytes.", "too_large")
        except ClientDisconnect:
            raise HTTPError(499, "The client went away.", "client_disconnect") from None
        try:
            return parse_body(bytes(data))
        except BadBody as exc:
            raise HTTPError(400, f"Bad request body: {exc}.", "bad_request") from None


Handler = Callable[["GuardService", "Request"], Awaitable[Any]]
