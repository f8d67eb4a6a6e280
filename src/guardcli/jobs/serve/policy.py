"""What every protocol shares: the bad-request error, size limits, the flagging policy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from guardcli.core.verdicts import Record, RecordError


class BadRequest(ValueError):
    """The request body does not have the protocol's shape (answered with HTTP 400)."""


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 32_000
    max_items: int = 256  # texts per request


@dataclass(frozen=True)
class Policy:
    """What the server knows about the loaded guard when it shapes answers."""

    model: str
    variant: str | None
    threshold: float
    positive_class: str = "unsafe"
    accepts_messages: bool = False  # dialogue / response families read `structured_messages`
    fail_closed: bool = True
    allow_unjudged: bool = False  # let content the model cannot read (images, audio) pass
    # The family's categories -> OpenAI moderation categories (lower-cased keys).
    openai: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# Error types a server decides on by policy rather than by --fail-closed/--fail-open.
EMPTY = "empty_text"  # nothing to judge: allowed, with the error as a note
UNJUDGED = "unjudged_content"  # images, audio, a reply without its dialogue: blocked unless
# --allow-unjudged


def unjudged(what: str, line: int | None = None) -> Record:
    """A record standing for content the model cannot judge."""
    return Record(
        id=str(line) if line is not None else None,
        line=line,
        error=RecordError(UNJUDGED, what, line),
    )
