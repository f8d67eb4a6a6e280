"""The classify job: records in, verdicts out, in order, with a summary and an exit code."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.verdicts import NON_FINITE, Record, RecordError, Verdict
from guardcli.families import Guard
from guardcli.families.base import unreadable


@dataclass
class Summary:
    records: int = 0
    flagged: int = 0
    errors: int = 0
    tokens: int = 0
    truncated: int = 0
    seconds: float = 0.0
    cached: int = 0  # records answered from the verdict cache
    error_types: dict[str, int] = field(default_factory=dict)

    def add(self, verdicts: Iterable[Verdict]) -> None:
        for v in verdicts:
            self.records += 1
            self.flagged += bool(v.flagged)
            self.tokens += v.tokens or 0
            self.truncated += bool(v.truncated)
            if v.error is not None:
                self.errors += 1
                self.error_types[v.error.type] = self.error_types.get(v.error.type, 0) + 1

    @property
    def exit_code(self) -> ExitCode:
        """An error outranks a flag; a broken model (a score that is not finite) outranks a bad
        record."""
        if self.error_types.get(NON_FINITE):
            return ExitCode.MODEL
        if self.errors:
            return ExitCode.INPUT
        return ExitCode.FLAGGED if self.flagged else ExitCode.OK

    def line(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        parts = [f"{self.records} records", f"{self.flagged} flagged", f"{self.errors} errors"]
        if self.truncated:
            parts.append(f"{self.truncated} truncated")
        if self.cached:
            parts.append(f"{self.cached} from cache")
        return ", ".join(parts) + f" in {self.seconds:.2f}s ({rate:.1f} records/s)"


class Classifier(Protocol):
    """A Guard, or anything that judges a stream the same way (an escalation pipeline)."""

    def classify_stream(self, records: Iterable[Record]) -> Iterator[list[Verdict]]: ...


def classify_into(
    guard: Guard | Classifier,
    records: Iterable[Record],
    write: Callable[[list[Verdict]], None],
    *,
    on_chunk: Callable[[Summary], None] | None = None,
) -> Summary:
    """Classify a stream, handing each chunk of verdicts to `write` as soon as it is ready."""
    summary = Summary()
    cache = getattr(guard, "verdict_cache", None)
    hits = 0 if cache is None else cache.stats().hits
    start = time.perf_counter()
    for verdicts in guard.classify_stream(records):
        write(verdicts)
        summary.add(verdicts)
        summary.seconds = time.perf_counter() - start
        if cache is not None:
            summary.cached = cache.stats().hits - hits
        if on_chunk:
            on_chunk(summary)
    summary.seconds = time.perf_counter() - start
    return summary


def rendered_inputs(guard: Guard, records: Iterable[Record]) -> Iterator[dict[str, Any]]:
    """`--show-input`: per record, the exact text the model would receive (or the error)."""
    for record in records:
        try:
            if record.error is not None:
                raise record.error
            try:
                rendered = guard.render(record)
            except (RecordError, GuardError):
                raise
            except Exception as exc:  # this record's content, not the model: its error
                raise unreadable(record, exc) from None
            yield {"id": record.id, "input": rendered, **record.kept}
        except RecordError as err:
            yield Verdict.failed(record, err, fail_closed=guard.fail_closed).to_dict()
