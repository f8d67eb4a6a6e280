"""Request side: each protocol's JSON body -> guard records (sizes checked, parts unjudged)."""

from __future__ import annotations

import math
from typing import Any

from guardcli.core.records import ReadOptions, record_from_object, record_from_text
from guardcli.core.verdicts import Record, RecordError
from guardcli.jobs.serve.policy import (
    BadRequest,
    Limits,
    Policy,
    unjudged,
)


def clip(record: Record, limits: Limits) -> bool:
    """Cut an over-long text (or message) to the limit in place; True when something was cut."""
    cut = False
    if record.text is not None and len(record.text) > limits.max_text_chars:
        record.text = record.text[: limits.max_text_chars]
        cut = True
    if record.messages:
        clipped = []
        for message in record.messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str) and len(content) > limits.max_text_chars:
                message = {**message, "content": content[: limits.max_text_chars]}
                cut = True
            clipped.append(message)
        record.messages = clipped
    return cut


def _threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"threshold must be a number, not {value!r}")
    if not 0.0 <= float(value) <= 1.0:
        raise BadRequest(f"threshold must be between 0 and 1, not {value}")
    return float(value)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    return body


def _count(n: int, limits: Limits) -> None:
    if n > limits.max_items:
        raise BadRequest(f"too many inputs in one request ({n} > {limits.max_items})")


def _text_records(texts: list[Any]) -> list[Record]:
    out = []
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise BadRequest(f"input {number} must be a string, not {type(text).__name__}")
        out.append(record_from_text(text, number))
    return out


def _part_text(part: Any, where: str) -> str | None:
    """The text of one content part (OpenAI's `{"type": "text", "text": ...}`), or None for a
    part the model cannot read (image, audio, file)."""
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        raise BadRequest(f"{where} must be a string or an object, not {type(part).__name__}")
    kind = part.get("type", "text")
    if not isinstance(kind, str):
        raise BadRequest(f"{where}.type must be a string")
    # Text by another name: a model's refusal is words the guard can read.
    field = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}
    if kind in field:
        text = part.get(field[kind])
        if not isinstance(text, str):
            raise BadRequest(f"{where}.{field[kind]} must be a string")
        return text
    return None


def _messages(value: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """LiteLLM's structured_messages as text-only turns, and what in them the model cannot
    read. Text parts of a turn are joined by newlines; a turn with no content is empty."""
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise BadRequest("'structured_messages' must be a list of objects")
    out: list[dict[str, Any]] = []
    unread: list[str] = []
    for n, message in enumerate(value, start=1):
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for k, part in enumerate(content, start=1):
                text = _part_text(part, f"structured_messages[{n}].content[{k}]")
                if text is None:
                    unread.append(f"structured_messages[{n}] has a {part.get('type')} part")
                else:
                    texts.append(text)
            content = "\n".join(texts)
        elif content is None:
            content = ""
        elif not isinstance(content, str):
            raise BadRequest(f"structured_messages[{n}].content must be a string or a list")
        out.append({**message, "content": content})
    return out, unread


def guardrail_request(
    body: Any, policy: Policy, limits: Limits
) -> tuple[list[Record], float | None]:
    """LiteLLM `POST /beta/litellm_basic_guardrail_api` -> records to judge, threshold.

    Images (and image or audio parts of structured_messages) become unjudged records. A family
    that judges dialogues gets the conversation; a response it is asked to judge without its
    conversation (LiteLLM's post_call sends none) is unjudged too, never judged as a prompt.
    """
    body = _object(body)
    texts = body.get("texts")
    texts = [] if texts is None else texts
    if not isinstance(texts, list):
        raise BadRequest("'texts' must be a list of strings")
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise BadRequest(f"texts[{number}] must be a string, not {type(text).__name__}")
    input_type = body.get("input_type", "request")
    if input_type not in ("request", "response"):
        raise BadRequest(f"'input_type' must be request or response, not {input_type!r}")
    params = body.get("additional_provider_specific_params")
    if params is not None and not isinstance(params, dict):
        raise BadRequest("'additional_provider_specific_params' must be an object")
    threshold = _threshold((params or {}).get("threshold"))
    images = body.get("images")
    if images is not None and not isinstance(images, list):
        raise BadRequest("'images' must be a list")
    raw_messages = body.get("structured_messages")
    messages, unread = ([], []) if raw_messages is None else _messages(raw_messages)
    records: list[Record]
    if policy.accepts_messages and messages:
        if input_type == "response":
            # Response moderation: each text is the reply under review, after the dialogue.
            records = [
                Record(id=str(i), line=i, messages=[*messages, {"role": "assistant", "content": t}])
                for i, t in enumerate(texts, start=1)
            ]
        else:
            records = [Record(id="1", line=1, messages=messages)]
    elif policy.accepts_messages and input_type == "response" and texts:
        records = [
            unjudged(
                f"{policy.model} judges a reply in its conversation, and the request carries "
                "no structured_messages (LiteLLM sends none in post_call mode); use mode "
                "pre_call or during_call, or --allow-unjudged",
                i,
            )
            for i in range(1, len(texts) + 1)
        ]
    else:
        records = _text_records(texts)
    # LiteLLM lists a message's images both as parts and in `images`: count them once. Audio
    # parts appear only in the messages, for every family (`texts` holds text parts alone).
    unread = unread or [f"image {n}" for n in range(1, len(images or []) + 1)]
    records.extend(unjudged(f"{what}: {policy.model} reads text only") for what in unread)
    _count(len(records), limits)
    return records, threshold


def moderation_request(body: Any, limits: Limits) -> list[Record]:
    """OpenAI `POST /v1/moderations`: `input` is a string or a list of strings."""
    body = _object(body)
    if "input" not in body:
        raise BadRequest("missing 'input'")
    value = body["input"]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise BadRequest("'input' must be a string or a list of strings")
    _count(len(items), limits)
    records = []
    for number, item in enumerate(items, start=1):
        # Multi-modal parts: one result per part; a part the model cannot read is unjudged.
        text = _part_text(item, f"input[{number}]")
        if text is None:
            records.append(unjudged(f"a {item['type']} part: the model reads text only", number))
        else:
            records.append(record_from_text(text, number))
    return records


def check_request(body: Any, limits: Limits) -> tuple[Record, str, float | None]:
    """OpenCC `POST /check` with `{"text", "mode"}`."""
    body = _object(body)
    text = body.get("text")
    if not isinstance(text, str):
        raise BadRequest("'text' must be a string")
    mode = body.get("mode", "block")
    if mode not in ("block", "annotate"):
        raise BadRequest(f"'mode' must be block or annotate, not {mode!r}")
    return record_from_text(text, 1), mode, _threshold(body.get("threshold"))


def classify_request(body: Any, limits: Limits) -> tuple[list[Record], float | None]:
    """guard's own schema: a list of records (strings or objects), or `{"records": [...]}`."""
    threshold = None
    if isinstance(body, dict):
        threshold = _threshold(body.get("threshold"))
        body = body.get("records")
    if not isinstance(body, list):
        raise BadRequest("expected a JSON list of records, or an object with 'records'")
    _count(len(body), limits)
    opts = ReadOptions()
    records = []
    for number, item in enumerate(body, start=1):
        if isinstance(item, dict):
            records.append(record_from_object(item, number, opts))
        elif isinstance(item, str):
            records.append(record_from_text(item, number))
        else:
            records.append(
                Record(
                    id=str(number),
                    line=number,
                    error=RecordError(
                        "bad_field", f"a record is a string or an object, not {item!r}", number
                    ),
                )
            )
    return records, threshold
