"""Records in, verdicts out: the data that flows through every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The fields of a verdict, in the order they are written (DESIGN.md "Records").
VERDICT_FIELDS = (
    "id",
    "flagged",
    "score",
    "threshold",
    "label",
    "categories",
    "severity",
    "refusal",
    "model",
    "variant",
    "tokens",
    "truncated",
)


@dataclass
class RecordError(Exception):
    """Why a record could not be judged."""

    # invalid_json | invalid_utf8 | invalid_text | missing_field | bad_field | empty_text |
    # model_output | non_finite_score
    type: str
    message: str
    line: int | None = None
    raw: str | None = None  # the model's own text, for model_output errors

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type, "message": self.message, "line": self.line}
        if self.raw is not None:
            out["raw"] = self.raw
        return out


NON_FINITE = "non_finite_score"


def non_finite_error(line: int | None = None) -> RecordError:
    """A score that is NaN or infinite: the model is broken, and that is never "safe"."""
    return RecordError(
        NON_FINITE,
        "the model produced a score that is not a finite number (NaN or infinity); "
        "the model or its variant is broken",
        line,
    )


@dataclass
class Record:
    """One input record: a bare string or a JSON object, with where it came from."""

    id: Any
    text: str | None = None
    messages: list[dict[str, Any]] | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    error: RecordError | None = None
    kept: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str, id: Any = None) -> Record:
        return cls(id=id, text=text)


@dataclass
class Verdict:
    """The judgement of one record. Exactly one per input record, in input order."""

    id: Any
    flagged: bool | None
    score: float | None = None
    threshold: float | None = None
    label: str | None = None
    categories: dict[str, Any] | list[str] | None = None
    severity: str | None = None
    refusal: bool | None = None
    model: str | None = None
    variant: str | None = None
    tokens: int | None = None
    truncated: bool | None = None
    error: RecordError | None = None
    kept: dict[str, Any] = field(default_factory=dict)
    # `--long segments`: which window of the text the verdict is (index, count, start, end:
    # character offsets); written only when set.
    segment: dict[str, int] | None = None

    @classmethod
    def failed(cls, record: Record, error: RecordError, *, fail_closed: bool = False) -> Verdict:
        return cls(
            id=record.id, flagged=True if fail_closed else None, error=error, kept=record.kept
        )

    def to_dict(self) -> dict[str, Any]:
        if self.error is not None:
            out: dict[str, Any] = {
                "id": self.id,
                "error": self.error.to_dict(),
                "flagged": self.flagged,
            }
        else:
            out = {name: getattr(self, name) for name in VERDICT_FIELDS}
            if self.segment is not None:
                out["segment"] = self.segment
        for key, value in self.kept.items():
            out.setdefault(key, value)
        return out


# The roles a chat record's `messages` may hold.
CHAT_ROLES = ("system", "user", "assistant")


def record_messages(record: Record) -> list[dict[str, str]]:
    """A record's conversation: its `messages` (validated), else its text as one user turn."""
    if record.messages is None:
        if record.text is None:
            raise RecordError("missing_field", "record has no text or messages", record.line)
        return [{"role": "user", "content": record.text}]
    out: list[dict[str, str]] = []
    for n, message in enumerate(record.messages, start=1):
        if not isinstance(message, dict):
            raise RecordError("bad_field", f"messages[{n}] must be an object", record.line)
        role, content = message.get("role"), message.get("content")
        if role not in CHAT_ROLES:
            raise RecordError(
                "bad_field",
                f"messages[{n}].role must be one of {', '.join(CHAT_ROLES)}, not {role!r}",
                record.line,
            )
        if not isinstance(content, str):
            raise RecordError("bad_field", f"messages[{n}].content must be a string", record.line)
        out.append({"role": role, "content": content})
    if not out:
        raise RecordError("empty_text", "messages is empty", record.line)
    if out[-1]["role"] == "system":
        raise RecordError(
            "bad_field", "the last message must be from the user or the assistant", record.line
        )
    return out
