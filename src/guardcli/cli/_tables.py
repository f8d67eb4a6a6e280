"""Tables for people, drawn with rich: the classify verdict table. Machine formats (jsonl,
json, csv) are written by the library (records.VerdictWriter); only drawing lives here."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

from guardcli.core.strict_json import printable
from guardcli.core.verdicts import Record

TEXT_CHARS = 48  # the input text is shown shortened to this many characters
_SPACE = re.compile(r"\s+")

# Which optional columns a table has is decided by its rows: each family fills some of these
# fields (qwen3guard-gen: categories, severity, refusal; opencc-cm: categories and a category
# label; opencc-jb and intent models: their own labels; pipelines: decision).
_PLAIN_LABELS = frozenset({"safe", "unsafe"})


def short_text(text: str | None, limit: int = TEXT_CHARS) -> str:
    """One line at most `limit` terminal cells wide (a CJK character takes two): whitespace runs
    become one space, and a cut ends with an ellipsis."""
    from rich.cells import cell_len
    from rich.text import Text

    if not text:
        return ""
    flat = printable(_SPACE.sub(" ", text).strip())
    if cell_len(flat) <= limit:
        return flat
    cut = Text(flat)
    cut.truncate(limit, overflow="ellipsis")
    return cut.plain


def record_text(record: Record) -> str | None:
    """What a person recognises a record by: its text, else its last message's content."""
    if record.text:
        return record.text
    for message in reversed(record.messages or []):
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
    return None


class InputTexts:
    """Remembers each record's text as the records stream past, so the table, drawn once every
    verdict is in (one per record, in input order), can show them beside their verdicts."""

    def __init__(self) -> None:
        self.texts: list[str | None] = []

    def tap(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            self.texts.append(record_text(record))
            yield record


def _categories(value: Any) -> str:
    """qwen3guard-gen: a list of names. Multilabel (opencc-cm): {name: {score, flagged}}; the
    flagged ones are shown with their scores, else the top one."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "None"
    if not isinstance(value, dict):
        return str(value)
    scored = {
        name: (c.get("score"), bool(c.get("flagged"))) if isinstance(c, dict) else (c, False)
        for name, c in value.items()
    }
    flagged = [n for n, (_, f) in scored.items() if f]
    shown = flagged or sorted(scored, key=lambda n: -(scored[n][0] or 0.0))[:1]
    return ", ".join(
        f"{n} {scored[n][0]:.2f}" if isinstance(scored[n][0], float) else n for n in shown
    )


def _refusal(value: Any) -> str:
    return "" if value is None else ("yes" if value else "no")


def verdict_table(rows: list[dict[str, Any]], out: IO[str], texts: list[str | None]) -> None:
    """Draw verdict rows: id, verdict, score, the columns this family fills, tokens, a note
    (truncated, or the error) and the input text, shortened to what the width leaves (up to
    TEXT_CHARS characters; left out below MIN_TEXT)."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(file=out, soft_wrap=False)
    judged = [r for r in rows if "error" not in r]
    optional = {
        "decision": any(r.get("decision") is not None for r in rows),
        "label": any(r.get("label") not in (None, *_PLAIN_LABELS) for r in judged),
        "categories": any(r.get("categories") is not None for r in judged),
        "severity": any(r.get("severity") is not None for r in judged),
        "refusal": any(r.get("refusal") is not None for r in judged),
    }
    columns = [
        "id",
        "verdict",
        *(["decision"] if optional["decision"] else []),
        "score",
        *(name for name in ("label", "categories", "severity", "refusal") if optional[name]),
        "tokens",
        "note",
    ]
    without_text = _table(rows, columns, [])
    used = Measurement.get(console, console.options, without_text).maximum
    room = min(TEXT_CHARS, console.width - used - 3)  # a border and two spaces of padding
    if room >= MIN_TEXT and any(texts):
        shown = [short_text(t, room) for t in texts]
        console.print(_table(rows, [*columns, "text"], shown))
    else:
        console.print(without_text)


MIN_TEXT = 12
NOTE_WIDTH = 40  # an error message wraps within this, leaving room for the text


def _table(rows: list[dict[str, Any]], columns: list[str], texts: list[str]) -> Any:
    from rich.table import Table
    from rich.text import Text

    table = Table(show_lines=False)
    for col in columns:
        table.add_column(
            col,
            justify="right" if col in ("score", "tokens") else "left",
            no_wrap=col not in ("note", "categories", "label"),
            max_width=NOTE_WIDTH if col in ("note", "categories") else None,
        )
    for i, row in enumerate(rows):
        cells: dict[str, Any] = {
            "id": Text(printable(str(row["id"]))),
            "decision": Text(str(row.get("decision") or "")),
            "text": Text(texts[i] if i < len(texts) else ""),
        }
        if "error" in row:
            cells["verdict"] = (
                "[red]error[/]" if row["flagged"] is None else "[red]FLAGGED[/] (error)"
            )
            cells["note"] = Text(printable(f"{row['error']['type']}: {row['error']['message']}"))
        else:
            cells["verdict"] = "[bold red]FLAGGED[/]" if row["flagged"] else "[green]ok[/]"
            cells["note"] = "truncated" if row.get("truncated") else ""
            cells["score"] = "" if row.get("score") is None else f"{row['score']:.4f}"
            cells["tokens"] = str(row.get("tokens") or "")
            cells["label"] = Text(printable(str(row.get("label") or "")))
            cells["categories"] = Text(printable(_categories(row.get("categories"))))
            cells["severity"] = row.get("severity") or ""
            cells["refusal"] = _refusal(row.get("refusal"))
        table.add_row(*(cells.get(col, "") for col in columns))
    return table
