"""The /v1/streams endpoints: requests checked at the door, answers as JSON or Server-Sent
Events (`Accept: text/event-stream`, or `"sse": true` in the body).

    POST   /v1/streams        {"prompt": str, "messages": [{"role", "content"}, ...]?}
                              -> {"id", "prompt": {risk_level, category, p_unsafe, ...}, "flagged"}
    POST   /v1/streams/{id}   {"text": str} | {"token_ids": [int, ...]}, "final": bool?
                              -> {"id", "verdicts": [...], "risk_level", "category", "flagged",
                                  "first_unsafe_offset", "tokens", "chars", "pending", "final"}
    DELETE /v1/streams/{id}   -> {"id", "deleted": true}

As events: `prompt` (open), one `verdicts` event per batch of token verdicts, then `summary`
(the JSON answer without its verdicts); an `error` event if judging fails midway.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from guardcli.core.verdicts import Verdict
from guardcli.jobs.serve.policy import BadRequest
from guardcli.jobs.serve.requests import _messages
from guardcli.jobs.serve.responses import guardrail_response
from guardcli.jobs.serve.service import HTTPError, redact
from guardcli.jobs.serve.stream_service import StreamService, token_dict
from guardcli.jobs.stream import streaming_families

if TYPE_CHECKING:
    from starlette.requests import Request

    from guardcli.jobs.serve.service import GuardService

ROLES = ("user", "assistant", "system")
OPEN_FIELDS = {"prompt", "messages", "sse"}
APPEND_FIELDS = {"text", "token_ids", "final", "sse"}


def streams_of(service: GuardService) -> StreamService:
    if not service.judges_streams:
        names = ", ".join(f.name for f in streaming_families()) or "none installed"
        raise HTTPError(
            501,
            f"Model '{service.guard.name}' (family {service.guard.family}) does not judge "
            f"streams: /v1/streams needs a model of a family with token-level verdicts "
            f"({names}). Serve one, e.g. `guard serve --model qwen3guard-stream`, or send "
            "whole texts to /v1/classify.",
            "not_implemented",
        )
    return service.stream_service()


def _fields(body: Any, allowed: set[str], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(f"the body of {what} must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(
            f"unknown field(s) {', '.join(map(repr, unknown))} in {what}; "
            f"it takes {', '.join(sorted(allowed))}"
        )
    return body


def _text(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"'{name}' must be a string, not {type(value).__name__}")
    if len(value) > limit:
        raise BadRequest(
            f"'{name}' is {len(value)} characters, over the server's {limit} "
            "(--max-text-chars); send it in smaller pieces"
        )
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false, not {value!r}")
    return value


def conversation(body: dict[str, Any], limit: int) -> list[dict[str, str]]:
    """The conversation a new stream answers, ending with the user's prompt."""
    messages = body.get("messages")
    turns: list[dict[str, str]] = []
    if messages is not None:
        if not isinstance(messages, list):
            raise BadRequest('\'messages\' must be a list of {"role", "content"} objects')
        for n, m in enumerate(messages, start=1):
            if not isinstance(m, dict) or set(m) - {"role", "content", "name"}:
                raise BadRequest(f"messages[{n}] must be an object with 'role' and 'content'")
            if m.get("role") not in ROLES:
                raise BadRequest(f"messages[{n}].role must be one of {', '.join(ROLES)}")
            turns.append(
                {
                    "role": m["role"],
                    "content": _text(m.get("content"), f"messages[{n}].content", limit),
                }
            )
    if "prompt" in body:
        turns.append({"role": "user", "content": _text(body["prompt"], "prompt", limit)})
    if not turns:
        raise BadRequest("give the user's 'prompt' (and optionally the 'messages' before it)")
    if turns[-1]["role"] != "user":
        raise BadRequest(
            "the conversation must end with the user's turn that the streamed answer replies "
            "to: add 'prompt', or end 'messages' with a user message"
        )
    return turns


def token_ids(value: Any, vocab: int, limit: int) -> list[int]:
    if not isinstance(value, list) or not value:
        raise BadRequest("'token_ids' must be a non-empty list of integers")
    if len(value) > limit:
        raise BadRequest(f"'token_ids' holds {len(value)} ids; send at most {limit} per request")
    for n, t in enumerate(value, start=1):
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < vocab:
            raise BadRequest(f"token_ids[{n}] must be an integer from 0 to {vocab - 1}, not {t!r}")
    return value


def wants_sse(request: Request, body: dict[str, Any]) -> bool:
    if "sse" in body:
        return _bool(body["sse"], "sse")
    return "text/event-stream" in request.headers.get("accept", "")


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _event_stream(chunks: Any):
    from starlette.responses import StreamingResponse

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(chunks, media_type="text/event-stream", headers=headers)


def _stream(streams: StreamService, stream_id: str):
    stream = streams.store.get(stream_id)
    if stream is None:
        raise HTTPError(
            404,
            f"No open stream {stream_id!r}: it was deleted, expired, or never opened. "
            "Open one with POST /v1/streams.",
            "not_found",
        )
    return stream


async def open_stream(service: GuardService, request: Request) -> Any:
    streams = streams_of(service)
    body = _fields(await service.body(request), OPEN_FIELDS, "POST /v1/streams")
    turns = conversation(body, service.limits.max_text_chars)
    sse_wanted = wants_sse(request, body)
    stream = await streams.open(turns)
    answer = {"id": stream.id, "prompt": stream.prompt, "flagged": streams.prompt_flagged(stream)}
    if sse_wanted:

        async def events():
            yield sse("prompt", answer)

        return _event_stream(events())
    return answer


async def append(service: GuardService, request: Request) -> Any:
    streams = streams_of(service)
    stream = _stream(streams, request.path_params["stream_id"])
    body = _fields(await service.body(request), APPEND_FIELDS, "POST /v1/streams/{id}")
    limit = service.limits.max_text_chars
    if "text" in body and "token_ids" in body:
        raise BadRequest("send either 'text' or 'token_ids', not both")
    final = _bool(body.get("final", False), "final")
    text = _text(body["text"], "text", limit) if "text" in body else None
    ids = (
        token_ids(body["token_ids"], streams.engine.vocab_size, limit)
        if "token_ids" in body
        else None
    )
    if text is None and ids is None and not final:
        raise BadRequest("send 'text' or 'token_ids' (the answer's next piece), or 'final': true")
    kind = "text" if text is not None else "token_ids" if ids is not None else None
    if kind is not None and stream.feed not in (None, kind):
        raise BadRequest(f"stream {stream.id} is fed {stream.feed}; it cannot take {kind} too")
    if stream.finished:
        raise BadRequest(f"stream {stream.id} is final; open a new one with POST /v1/streams")
    if stream.failed:
        raise HTTPError(
            409,
            f"stream {stream.id} failed ({redact(stream.failed)}); open a new one",
            "stream_failed",
        )
    stream.feed = stream.feed or kind
    if not wants_sse(request, body):
        return await streams.append(stream, text=text, token_ids=ids, final=final)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[list[Any]] = asyncio.Queue()

    def on_chunk(verdicts: list[Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, verdicts)

    task = asyncio.ensure_future(
        streams.append(stream, text=text, token_ids=ids, final=final, on_chunk=on_chunk)
    )

    async def events():
        while not (task.done() and queue.empty()):
            getter = asyncio.ensure_future(queue.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield sse(
                    "verdicts",
                    {"id": stream.id, "verdicts": [token_dict(v) for v in getter.result()]},
                )
            else:
                getter.cancel()
        try:
            summary = task.result()
        except Exception as exc:
            yield sse(
                "error", {"message": redact(f"{type(exc).__name__}: {exc}"), "type": "runtime"}
            )
            return
        summary.pop("verdicts")
        yield sse("summary", summary)

    return _event_stream(events())


async def delete(service: GuardService, request: Request) -> Any:
    streams = streams_of(service)
    stream = _stream(streams, request.path_params["stream_id"])
    streams.close(stream.id)
    return {"id": stream.id, "deleted": True}


async def litellm_reply(service: GuardService, body: Any) -> dict[str, Any] | None:
    """LiteLLM's fast path for a guard that judges streams: a request check remembers its
    conversation under its litellm_call_id; the reply checks that follow (LiteLLM re-sends the
    whole growing reply every few chunks and at the end) continue one stream per reply, so
    each judges only the text added since the last. None: answer the ordinary way."""
    if not service.judges_streams or not isinstance(body, dict):
        return None
    call_id, texts = body.get("litellm_call_id"), body.get("texts")
    if not isinstance(call_id, str) or not call_id or body.get("images"):
        return None
    raw = body.get("structured_messages")
    messages = None
    if raw is not None:
        turns, unread = _messages(raw)
        if unread or not turns or turns[-1].get("role") != "user":
            return None
        messages = [{"role": t.get("role", "user"), "content": t["content"]} for t in turns]
    streams = service.stream_service()
    if body.get("input_type", "request") == "request":
        if messages is not None:
            streams.remember(call_id, messages)
        return None
    messages = messages or streams.conversation(call_id)
    if messages is None or not isinstance(texts, list) or not texts:
        return None
    if not all(isinstance(t, str) and len(t) <= service.limits.max_text_chars for t in texts):
        return None  # the ordinary path says what is wrong
    verdicts = []
    for i, text in enumerate(texts, start=1):
        d = await streams.reply(call_id, i, messages, text)
        level = d["risk_level"]
        verdicts.append(
            Verdict(
                id=str(i),
                flagged=d["flagged"],
                score=d["p_unsafe_max"],
                label=level.lower(),
                categories=None if level == "Safe" else [d["category"]],
                severity=level,
                model=service.guard.name,
                variant=service.guard.variant,
                tokens=d["tokens"],
            )
        )
    service._count(verdicts, "guardrail")
    return guardrail_response(verdicts, service.policy)
