"""Read argv / stdin / JSONL into Records; stream them in chunks; write Verdicts."""

from __future__ import annotations

import csv
import json
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from .verdict import VERDICT_FIELDS, Record, RecordError, Verdict

FORMATS = ("table", "jsonl", "json", "csv")
TEXT_FIELD_FALLBACKS = ("text", "prompt")


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
    else:
        record.text = value
    return record


def record_from_text(text: str, line: int) -> Record:
    record = Record(id=str(line), line=line)
    if not text.strip():
        record.error = RecordError("empty_text", "empty text", line)
    else:
        record.text = text
    return record


def parse_line(raw: bytes, line: int, opts: ReadOptions) -> Record:
    """One input line: a JSON object is a record, anything else is plain text."""
    raw = raw.rstrip(b"\n").rstrip(b"\r")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Record(
            id=str(line),
            line=line,
            error=RecordError("invalid_utf8", f"line is not valid UTF-8 ({exc.reason})", line),
        )
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            return Record(
                id=str(line),
                line=line,
                error=RecordError("invalid_json", f"broken JSON object: {exc.msg}", line),
            )
        if isinstance(obj, dict):
            return record_from_object(obj, line, opts)
    return record_from_text(text, line)


def read_lines(stream: IO[bytes], opts: ReadOptions) -> Iterator[Record]:
    """Records from a binary stream, lazily, one per line (a final newline adds none)."""
    for number, raw in enumerate(stream, start=1):
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


class VerdictWriter:
    """Writes verdicts as jsonl (streamed, flushed per chunk), json, csv or a table."""

    def __init__(self, out: IO[str], fmt: str, keep: tuple[str, ...] = ()):
        self.out, self.fmt, self.keep = out, fmt, keep
        self.rows: list[dict[str, Any]] = []
        self._csv: Any = None

    def write(self, verdicts: Iterable[Verdict]) -> None:
        for verdict in verdicts:
            row = verdict.to_dict()
            if self.fmt == "jsonl":
                self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
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
        flat = {
            k: json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v
            for k, v in row.items()
        }
        if "error" in row:
            flat["error"] = f"{row['error']['type']}: {row['error']['message']}"
        self._csv.writerow(flat)

    def close(self) -> None:
        if self.fmt == "json":
            json.dump(self.rows, self.out, ensure_ascii=False, indent=2)
            self.out.write("\n")
        elif self.fmt == "table":
            self._table()
        self.out.flush()

    def _table(self) -> None:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_lines=False)
        for col in ("id", "verdict", "score", "tokens", "note"):
            table.add_column(col, justify="right" if col in ("score", "tokens") else "left")
        for row in self.rows:
            if "error" in row:
                verdict = "[red]error[/]" if row["flagged"] is None else "[red]FLAGGED[/] (error)"
                note = f"{row['error']['type']}: {row['error']['message']}"
                table.add_row(str(row["id"]), verdict, "", "", note)
                continue
            verdict = "[bold red]FLAGGED[/]" if row["flagged"] else "[green]ok[/]"
            note = "truncated" if row.get("truncated") else ""
            score = "" if row.get("score") is None else f"{row['score']:.4f}"
            table.add_row(str(row["id"]), verdict, score, str(row.get("tokens") or ""), note)
        Console(file=self.out, soft_wrap=False).print(table)
