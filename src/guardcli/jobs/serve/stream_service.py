"""Judging streams in the server: open, append, close, and LiteLLM's growing replies.

A guard whose family judges streams offers `stream_engine()` (qwen3guard-stream does); each
stream is a judge on a runner of its own, kept in the StreamStore. Appends run on a thread
pool; their forwards meet in the Coalescer. Every answer is a plain dict (stream_routes.py
shapes HTTP and Server-Sent Events around them).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from guardcli.jobs.serve.policy import BadRequest
from guardcli.jobs.serve.prometheus import Metrics
from guardcli.jobs.serve.streams import Coalescer, Stream, StreamStore

# LiteLLM calls whose conversation is remembered for their replies, at most (the oldest go).
MAX_CONVERSATIONS = 4096
# Template tokens around each turn (<|im_start|>, role, newlines, <|im_end|>), and the header.
HEADER_TOKENS = 16
# The fields of a token verdict that go on the wire.
TOKEN_FIELDS = ("index", "start", "end", "text", "risk_level", "category", "p_unsafe")


@dataclass(frozen=True)
class StreamOptions:
    cache_mb: float = 1024.0  # KV caches of open streams, together
    ttl_s: float = 300.0  # an idle stream's cache is dropped after this
    expire_s: float = 3600.0  # an idle stream is closed after this
    max_batch: int = 16  # streams in one forward
    max_wait_ms: float = 5.0
    workers: int = 32  # appends judged at once (the rest wait their turn)


def token_dict(v: Any) -> dict[str, Any]:
    row = {k: getattr(v, k) for k in TOKEN_FIELDS}
    row["probabilities"] = v.probabilities
    return row


class StreamService:
    def __init__(self, engine: Any, options: StreamOptions, metrics: Metrics):
        self.engine, self.options, self.metrics = engine, options, metrics
        self.store = StreamStore(
            cache_bytes=int(options.cache_mb * (1 << 20)),
            ttl_s=options.ttl_s,
            expire_s=options.expire_s,
            on_evict=lambda reason: metrics.stream_evictions.labels(reason=reason).inc(),
        )
        self.coalescer = Coalescer(
            engine.forward_batch,
            max_batch=options.max_batch,
            max_wait_s=options.max_wait_ms / 1000.0,
            on_batch=lambda n, _s: metrics.stream_batch_size.observe(n),
        )
        self.pool = ThreadPoolExecutor(options.workers, thread_name_prefix="guard-stream")
        self.calls: dict[tuple[str, int], str] = {}  # (litellm_call_id, choice) -> stream id
        self.conversations: dict[str, tuple[list[dict[str, Any]], float]] = {}
        metrics.streams_open.set_function(lambda: len(self.store))
        metrics.stream_cache_bytes.set_function(lambda: self.store.cache_bytes)

    def stop(self) -> None:
        self.coalescer.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, stream: Stream, fn: Callable[[], Any]) -> Any:
        """`fn` on a worker thread, the stream marked busy (never evicted meanwhile). The
        limits are applied before (idle streams past their TTL) and after (the memory cap)."""
        self.store.enforce()
        stream.busy += 1

        def work() -> Any:
            with self.coalescer.working():
                return fn()

        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, work)
        except Exception as exc:
            stream.failed = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            stream.busy -= 1
            self.store.touch(stream)
            self.store.enforce()

    # ------------------------------------------------------------ the /v1/streams API

    def check_length(self, stream: Stream | None, text: str, tokens: int = 0) -> None:
        """BadRequest when judging `text` (or `tokens` more ids) would take the stream past
        the model's context, where its verdicts would mean nothing."""
        engine = self.engine
        have = 0 if stream is None else stream.judge.runner.length
        pending = "" if stream is None else stream.judge.retok.pending
        if have + engine.count(pending + text) + tokens + HEADER_TOKENS > engine.max_tokens:
            raise BadRequest(
                f"the stream would be longer than the model's {engine.max_tokens} tokens "
                f"(--max-length); judge the rest in a new stream"
            )

    async def open(self, messages: list[dict[str, Any]]) -> Stream:
        """A new stream for the conversation ending in `messages[-1]` (the user's prompt)."""
        self.check_length(None, "".join(f"{m['role']}\n{m['content']}" for m in messages))
        judge = self.engine.judge(self.coalescer.feed)
        stream = Stream(id=f"strm-{uuid.uuid4().hex}", judge=judge, prompt={}, last_used=0.0)
        stream.lock = asyncio.Lock()
        *history, last = messages
        start = time.perf_counter()
        pv = await self._run(stream, lambda: judge.start(last["content"], history))
        self._latency(time.perf_counter() - start, 1)
        stream.prompt = {
            "role": "user",
            "risk_level": pv.risk_level,
            "category": pv.category,
            "p_unsafe": pv.p_unsafe,
            "probabilities": pv.probabilities,
            "tokens": pv.index + 1,
        }
        self.store.add(stream)
        self.store.enforce()
        return stream

    def prompt_flagged(self, stream: Stream) -> bool:
        level = stream.prompt["risk_level"]
        return level == "Unsafe" or (self.engine.strict and level == "Controversial")

    async def append(
        self,
        stream: Stream,
        *,
        text: str | None = None,
        token_ids: list[int] | None = None,
        final: bool = False,
        on_chunk: Callable[[list[Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Judge the new piece; the answer lists the tokens that became final. `on_chunk` is
        called on the worker thread with each batch of verdicts as it is judged."""
        judge = stream.judge

        def work() -> list[Any]:
            verdicts: list[Any] = []
            if token_ids is not None:
                verdicts += judge.push_ids(token_ids)
            elif text:
                verdicts += judge.push(text)
            if on_chunk is not None and verdicts:
                on_chunk(list(verdicts))
            if final:
                tail = judge.finish()
                if on_chunk is not None and tail:
                    on_chunk(tail)
                verdicts += tail
            return verdicts

        start = time.perf_counter()
        async with stream.lock:
            self.check_length(stream, text or "", len(token_ids or ()))
            verdicts = await self._run(stream, work)
            stream.finished = stream.finished or final
        self._latency(time.perf_counter() - start, len(verdicts))
        return self.summary(stream, verdicts)

    def summary(self, stream: Stream, verdicts: list[Any]) -> dict[str, Any]:
        judge = stream.judge
        s = judge.state
        return {
            "id": stream.id,
            "verdicts": [token_dict(v) for v in verdicts],
            "risk_level": s.risk_level,
            "category": s.category,
            "flagged": self.prompt_flagged(stream) or judge.flagged,
            "first_unsafe_offset": judge.flag_offset,
            "tokens": s.tokens,
            "chars": len(judge.answer),
            "pending": len(judge.retok.pending) if not stream.finished else 0,
            "final": stream.finished,
        }

    def close(self, stream_id: str) -> Stream | None:
        stream = self.store.remove(stream_id)
        self.calls = {k: v for k, v in self.calls.items() if v != stream_id}
        return stream

    def _latency(self, seconds: float, tokens: int) -> None:
        if tokens:
            per = seconds / tokens
            histogram = self.metrics.stream_token_seconds
            for _ in range(tokens):
                histogram.observe(per)

    # ------------------------------------------------------------ LiteLLM's fast path

    def remember(self, call_id: str, messages: list[dict[str, Any]]) -> None:
        """The conversation LiteLLM checked before the call (pre_call / during_call): the
        replies it sends later under the same litellm_call_id continue it."""
        now = time.monotonic()
        self.conversations = {
            k: v for k, v in self.conversations.items() if now - v[1] < self.options.expire_s
        }
        self.conversations[call_id] = (messages, now)
        while len(self.conversations) > MAX_CONVERSATIONS:  # the oldest first
            del self.conversations[next(iter(self.conversations))]
        self.calls = {k: v for k, v in self.calls.items() if v in self.store}  # expired ones

    def conversation(self, call_id: str) -> list[dict[str, Any]] | None:
        found = self.conversations.get(call_id)
        return None if found is None else found[0]

    async def reply(
        self, call_id: str, choice: int, messages: list[dict[str, Any]], text: str
    ) -> dict[str, Any]:
        """LiteLLM's re-check of a growing reply: judge only what was added since the last
        check of this call's reply (a reply that is not a continuation starts over), and
        decide on all of it, its still-changing last piece included (judged, not kept)."""
        key = (call_id, choice)
        stream = self.store.get(self.calls.get(key, ""))
        if stream is not None and (stream.failed or not text.startswith(stream.judge.answer)):
            self.close(stream.id)
            stream = None
        if stream is None:
            stream = await self.open(messages)
            stream.feed = "text"
            self.calls[key] = stream.id
        judge = stream.judge

        def work() -> dict[str, Any]:
            kept = judge.push(text[len(judge.answer) :])
            stream.extra["p_max"] = max(
                [stream.extra.get("p_max", 0.0)] + [v.p_unsafe for v in kept]
            )
            tail, decision = judge.peek()
            decision["p_unsafe_max"] = max([stream.extra["p_max"]] + [v.p_unsafe for v in tail])
            return decision

        async with stream.lock:
            self.check_length(stream, text[len(judge.answer) :])
            before = judge.state.tokens
            start = time.perf_counter()
            decision = await self._run(stream, work)
        judged = judge.state.tokens - before
        self._latency(time.perf_counter() - start, judged)
        decision["prompt_flagged"] = self.prompt_flagged(stream)
        decision["prompt_risk_level"] = stream.prompt["risk_level"]
        decision["new_tokens"] = judged
        return decision
