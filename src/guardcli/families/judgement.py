"""What a family says about one input (`Judgement`), and the record-level rules every family
shares: a non-finite score is an error record (fail closed), content that cannot be prepared is
an `invalid_text` error, and a long text is cut before tokenizing on the side the tokenizer
keeps. The Guard loop that uses them is families.base."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from guardcli.core.verdicts import Record, RecordError, non_finite_error


@dataclass
class Judgement:
    """What a family says about one input; the base class adds id, model and bookkeeping."""

    score: float | None
    flagged: bool
    label: str | None = None
    categories: dict[str, Any] | list[str] | None = None
    severity: str | None = None
    refusal: bool | None = None


def _non_finite(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    try:  # numpy scalars
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def finite_or_error(judgement: Judgement) -> Judgement | RecordError:
    """A judgement whose score or category scores are NaN or infinite is no judgement: the
    model is broken, and a broken model must never say "safe" (fail closed)."""
    if _non_finite(judgement.score) or _non_finite(judgement.categories):
        return non_finite_error()
    return judgement


# Text is cut to `max_length * CHARS_PER_TOKEN` characters before it is tokenized (memory stays
# bounded by the model's input, not the line's length); real text runs 2-6 characters a token,
# and the cut is widened whenever it could have changed the tokens the model keeps.
CHARS_PER_TOKEN = 16


def unreadable(record: Record, exc: BaseException) -> RecordError:
    """The error record for content the family's template or the tokenizer cannot take."""
    return RecordError(
        "invalid_text",
        f"the record's text cannot be prepared or tokenized ({type(exc).__name__}: {exc})",
        record.line,
    )


def _cut(text: str, limit: int, side: str) -> str:
    return text[-limit:] if side == "left" else text[:limit]


def _longer(record: Record, limit: int) -> bool:
    if isinstance(record.text, str) and len(record.text) > limit:
        return True
    return isinstance(record.messages, list) and any(
        isinstance(m, dict) and isinstance(m.get("content"), str) and len(m["content"]) > limit
        for m in record.messages
    )


def cut_record(record: Record, limit: int, side: str) -> Record | None:
    """A copy of `record` whose text and message contents are cut to `limit` characters,
    keeping the end the tokenizer keeps (`side` is its truncation side: "left" keeps the tail);
    None when nothing is longer than `limit`."""
    if not _longer(record, limit):
        return None
    changed = False
    text = record.text
    if isinstance(text, str) and len(text) > limit:
        text, changed = _cut(text, limit, side), True
    messages = record.messages
    if isinstance(messages, list):
        cut_messages: list[Any] = []
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str) and len(content) > limit:
                message = {**message, "content": _cut(content, limit, side)}
                changed = True
            cut_messages.append(message)
        messages = cut_messages
    if not changed:
        return None
    return dataclasses.replace(record, text=text, messages=messages)
