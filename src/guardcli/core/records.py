"""Read argv / stdin / JSONL into Records; stream them in chunks; write Verdicts."""

from __future__ import annotations

import csv
import json
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from guardcli.core.strict_json import dumps, printable, reject_constant
from guardcli.core.verdicts import VERDICT_FIELDS, Record, RecordError, Verdict, non_finite_error

FORMATS = ("table", "jsonl", "json", "csv")
TEXT_FIELD_FALLBACKS = ("text", "prompt")
BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class ReadOptions:
    text_field: str | None = None  # None: "text", falling back to "prompt"
    id_field: str = "id"
    keep: tuple[str, ...] = ()


def record_from_object(obj: dict[str, Any], line: int, opts: ReadOptions) -> Record:
    """A JSON object -> Record. Field problems become the record's error, never an exception."""
    rid = obj.get(opts.id_field)
    record = Record(
        id=str(line) if rid is None else rid,
        fields=obj,
        line=line,
        kept={k: obj[k] for k in opts.keep if k in obj},
    )
    messages = obj.get("messages")
    if isinstance(messages, list):
        record.messages = messages
    names = (opts.text_field,) if opts.text_field else TEXT_FIELD_FALLBACKS
    name = next((n for n in names if n in obj), None)
    if name is None:
        if record.messages is None:
            wanted = " or ".join(f"'{n}'" for n in names)
            record.error = RecordError(
                "missing_field", f"record has no {wanted} field (see --text-field)", line
            )
        return record
    value = obj[name]
    if not isinstance(value, str):
        record.error = RecordError(
            "bad_field", f"field '{name}' must be a string, not {type(value).__name__}", line
        )
    elif not value.strip():
        record.error = RecordError("empty_text", f"field '{name}' is empty", line)
    elif (bad := lone_surrogate(value)) is not None:
        record.error = RecordError(
            "invalid_text",
            f"field '{name}' holds a lone surrogate escape (\\u{bad:04x}), which is no character",
            line,
        )
    else:
        record.text = value
    return record


def lone_surrogate(text: str) -> int | None:
    """The code point of the first lone surrogate in `text` (a JSON "\\ud800" escape gives one;
    no tokenizer can read it), or None."""
    found = _SURROGATE.search(text)
    return None if found is None else ord(found.group())


def record_from_text(text: str, line: int) -> Record:
    record = Record(id=str(line), line=line)
    if not text.strip():
        record.error = RecordError("empty_text", "empty text", line)
    elif (bad := lone_surrogate(text)) is not None:
        record.error = RecordError(
            "invalid_text",
            f"text holds a lone surrogate (\\u{bad:04x}), which is no character",
            line,
        )
    else:
        record.text = text
    return record


def is_blank(raw: bytes, line: int) -> bool:
    """A line of ASCII whitespace only (after the BOM that may open line 1): skipped, not a
    record."""
    return not (raw.removeprefix(BOM) if line == 1 else raw).strip()


def _failed(line: int, kind: str, message: str) -> Record:
    return Record(id=str(line), line=line, error=RecordError(kind, message, line))


def parse_line(raw: bytes, line: int, opts: ReadOptions) -> Record:
    """One input line: a JSON object is a record, anything else is plain text.

    Never raises: whatever is wrong with the line (bad UTF-8 or JSON, JSON nested too deep for
    the parser, NaN, an integer too long to convert) becomes this record's error."""
    try:
        return _parse_line(raw, line, opts)
    except RecursionError:
        return _failed(line, "invalid_json", "JSON nested too deeply to read")
    except Exception as exc:
        return _failed(line, "invalid_json", f"unreadable line ({type(exc).__name__}: {exc})")


def _parse_line(raw: bytes, line: int, opts: ReadOptions) -> Record:
    raw = raw.rstrip(b"\n").rstrip(b"\r")
    if line == 1:  # a UTF-8 byte order mark opens the input, not the record
        raw = raw.removeprefix(BOM)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _failed(line, "invalid_utf8", f"line is not valid UTF-8 ({exc.reason})")
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text, parse_constant=reject_constant)
        except json.JSONDecodeError as exc:
            return _failed(line, "invalid_json", f"broken JSON object: {exc.msg}")
        except ValueError as exc:  # NaN/Infinity, an integer beyond int_max_str_digits
            return _failed(line, "invalid_json", f"broken JSON object: {exc}")
        if isinstance(obj, dict):
            return record_from_object(obj, line, opts)
    return record_from_text(text, line)


@dataclass
class ReadStats:
    """What a reader saw besides records: blank lines are skipped, and counted here."""

    lines: int = 0
    blank: int = 0

    @property
    def records(self) -> int:
        return self.lines - self.blank


def read_lines(
    stream: IO[bytes], opts: ReadOptions, stats: ReadStats | None = None
) -> Iterator[Record]:
    """Records from a binary stream, lazily, one per non-blank line (a final newline adds none).
    Ids default to the physical line number, so they point at the input line."""
    stats = stats if stats is not None else ReadStats()
    for number, raw in enumerate(stream, start=1):
        stats.lines = number
        if is_blank(raw, number):
            stats.blank += 1
            continue
        yield parse_line(raw, number, opts)


def read_args(texts: Iterable[str]) -> Iterator[Record]:
    """Records from command-line arguments: plain text, ids 1..N."""
    for number, text in enumerate(texts, start=1):
        yield record_from_text(text, number)


def as_records(items: Iterable[str | dict[str, Any] | Record], opts: ReadOptions) -> list[Record]:
    """Library input: strings, dicts or Records, numbered from 1."""
    out = []
    for number, item in enumerate(items, start=1):
        if isinstance(item, Record):
            out.append(item)
        elif isinstance(item, dict):
            out.append(record_from_object(item, number, opts))
        else:
            out.append(record_from_text(str(item), number))
    return out


_END = object()


def chunked(
    records: Iterable[Record], *, max_items: int = 256, max_wait: float = 0.05
) -> Iterator[list[Record]]:
    """Group a possibly slow stream into chunks.

    A chunk closes at `max_items`, or when no new record arrived for `max_wait` seconds, so a
    slow producer on stdin gets verdicts before EOF while a fast one still fills batches.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=max_items * 4)

    def pump() -> None:
        try:
            for record in records:
                q.put(record)
        except BaseException as exc:  # re-raised in the consumer
            q.put(exc)
        q.put(_END)

    threading.Thread(target=pump, daemon=True, name="guard-reader").start()
    chunk: list[Record] = []
    while True:
        try:
            item = q.get(timeout=max_wait) if chunk else q.get()
        except queue.Empty:
            yield chunk
            chunk = []
            continue
        if item is _END:
            break
        if isinstance(item, BaseException):
            if chunk:
                yield chunk
            raise item
        chunk.append(item)
        if len(chunk) >= max_items:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _finite_json(value: Any) -> bool:
    try:
        dumps(value)
    except (ValueError, TypeError):
        return False
    return True


def strict_row(
    verdict: Verdict, *, fail_closed: bool = False
) -> tuple[Verdict, dict[str, Any], str]:
    """(verdict, its row, the row as one strict JSON line). A verdict that carries NaN or
    infinity (a score no family check caught) becomes a `non_finite_score` error record."""
    row = verdict.to_dict()
    try:
        return verdict, row, dumps(row)
    except ValueError:
        pass
    failed = Verdict(
        id=verdict.id if _finite_json(verdict.id) else None,
        flagged=True if fail_closed else None,
        error=non_finite_error(verdict.error.line if verdict.error else None),
        kept={k: v for k, v in verdict.kept.items() if _finite_json(v)},
    )
    row = failed.to_dict()
    return failed, row, dumps(row)


class VerdictWriter:
    """Writes verdicts as jsonl (streamed, flushed per chunk), json or csv. For a table (a
    rendering for people, drawn by the CLI) it keeps the rows and hands them to `table` at
    close.

    Every row is strict JSON first: a verdict carrying NaN or infinity (a score no family check
    caught) is written as a `non_finite_score` error record in its place, never as `NaN`."""

    def __init__(
        self,
        out: IO[str],
        fmt: str,
        keep: tuple[str, ...] = (),
        *,
        fail_closed: bool = False,
        table: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        self.out, self.fmt, self.keep = out, fmt, keep
        self.fail_closed = fail_closed
        self.table = table
        self.rows: list[dict[str, Any]] = []
        self._csv: Any = None

    def write(self, verdicts: list[Verdict]) -> None:
        """Write a chunk. A verdict replaced by its error record is replaced in `verdicts` too,
        so the summary counts what was written."""
        for i, verdict in enumerate(verdicts):
            verdicts[i], row, line = strict_row(verdict, fail_closed=self.fail_closed)
            if self.fmt == "jsonl":
                self.out.write(line + "\n")
            elif self.fmt == "csv":
                self._write_csv(row)
            else:
                self.rows.append(row)
        self.out.flush()

    def _write_csv(self, row: dict[str, Any]) -> None:
        columns = [*VERDICT_FIELDS, "error", *self.keep]
        if self._csv is None:
            self._csv = csv.DictWriter(self.out, fieldnames=columns, extrasaction="ignore")
            self._csv.writeheader()
        flat = {k: dumps(v) if isinstance(v, dict | list) else printable(v) for k, v in row.items()}
        if "error" in row:
            flat["error"] = printable(f"{row['error']['type']}: {row['error']['message']}")
        self._csv.writerow(flat)

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write(dumps(self.rows, indent=2) + "\n")
        elif self.fmt == "table" and self.table is not None:
            self.table(self.rows)
        self.out.flush()
