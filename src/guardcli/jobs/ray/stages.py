"""The stages of a Ray run: JSONL lines in, one guard per actor, shards out, lines counted."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from guardcli.core.records import ReadOptions, is_blank, parse_line, record_from_object, strict_row
from guardcli.core.spec import GuardSpec
from guardcli.core.strict_json import dumps
from guardcli.core.verdict_cache import VerdictCache
from guardcli.core.verdicts import VERDICT_FIELDS, Record
from guardcli.families.loader import load_guard
from guardcli.jobs.classify import Summary

if TYPE_CHECKING:
    import pyarrow as pa


def split_lines(data: bytes) -> list[bytes]:
    """Lines as a binary stream yields them: split on \\n only; none after a final newline."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


class JsonlLines:
    """`flat_map`: one whole input file -> one row per line, with its file and 1-based number."""

    def __init__(self, root: str):
        self.root = root

    def __call__(self, row: dict[str, Any]) -> Iterator[dict[str, Any]]:
        name = _relative(row["path"], self.root)
        for number, raw in enumerate(split_lines(row["bytes"]), start=1):
            if not is_blank(raw, number):  # skipped, as `guard classify` skips them
                yield {"file": name, "line": number, "raw": raw}


def _relative(path: str, root: str) -> str:
    rel = os.path.relpath(path, root) if root else path
    return path if rel.startswith("..") else rel


class Classifier:
    """`map_batches` callable: loads the guard once per actor, turns rows into verdict JSON."""

    def __init__(
        self,
        spec: GuardSpec,
        read: ReadOptions,
        source: str,
        multi_file: bool,
        cache_mb: float | None = None,
    ):
        self.guard = load_guard(spec)
        if cache_mb is not None:  # repeats this worker has judged get their first verdict
            self.guard.verdict_cache = VerdictCache.of_mib(cache_mb)
        self.read, self.source, self.multi_file = read, source, multi_file

    def records(self, rows: list[dict[str, Any]]) -> list[Record]:
        if self.source == "parquet":
            # Parquet has no lines: errors carry line null, and ids come from --id-field.
            out = []
            for row in rows:
                record = record_from_object(row, 0, self.read)
                record.line = None
                if record.error is not None:
                    record.error.line = None
                if row.get(self.read.id_field) is None:
                    record.id = None
                out.append(record)
            return out
        out = []
        for row in rows:
            record = parse_line(row["raw"], row["line"], self.read)
            if self.multi_file and record.fields.get(self.read.id_field) is None:
                record.id = f"{row['file']}:{row['line']}"  # line numbers repeat across files
            out.append(record)
        return out

    def __call__(self, batch: pa.Table) -> dict[str, list[str]]:
        verdicts = self.guard.judge_records(self.records(batch.to_pylist()))
        fail_closed = self.guard.fail_closed
        return {"verdict": [strict_row(v, fail_closed=fail_closed)[2] for v in verdicts]}


def write_shard(batch: pa.Table, output: str, fmt: str, keep: tuple[str, ...]) -> dict[str, list]:
    """`map_batches` task: writes one block of verdicts as one shard and says what it wrote."""
    rows = [json.loads(v) for v in batch.column("verdict").to_pylist()]
    if not rows:
        return {"shard": [], "stats": []}
    summary = Summary()
    for row in rows:
        summary.records += 1
        summary.flagged += bool(row["flagged"])
        summary.tokens += row.get("tokens") or 0
        summary.truncated += bool(row.get("truncated"))
        if "error" in row:
            summary.errors += 1
            kind = row["error"]["type"]
            summary.error_types[kind] = summary.error_types.get(kind, 0) + 1
    path = f"{output.rstrip('/')}/part-{uuid.uuid4().hex[:16]}.{fmt}"
    import fsspec

    with fsspec.open(path, "wb") as handle:
        if fmt == "jsonl":
            handle.write("".join(dumps(r) + "\n" for r in rows).encode())
        else:
            import pyarrow.parquet as pq

            pq.write_table(parquet_table(rows, keep), handle)
    stats = {k: v for k, v in vars(summary).items() if k != "seconds"}
    return {"shard": [path], "stats": [json.dumps(stats)]}


def parquet_table(rows: list[dict[str, Any]], keep: tuple[str, ...] = ()) -> pa.Table:
    """Verdicts with one fixed schema, so every shard reads back as one table.

    ids and kept fields are strings (JSON text when not a string), categories is JSON text, and
    error is a struct (null for judged records).
    """
    import pyarrow as pa

    def text(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return dumps(value)

    types = {
        "id": pa.string(),
        "flagged": pa.bool_(),
        "score": pa.float64(),
        "threshold": pa.float64(),
        "label": pa.string(),
        "categories": pa.string(),
        "severity": pa.string(),
        "refusal": pa.bool_(),
        "model": pa.string(),
        "variant": pa.string(),
        "tokens": pa.int64(),
        "truncated": pa.bool_(),
        "error": pa.struct([("type", pa.string()), ("message", pa.string()), ("line", pa.int64())]),
    }
    columns: dict[str, list[Any]] = {name: [] for name in (*VERDICT_FIELDS, "error", *keep)}
    for row in rows:
        for name in columns:
            value = row.get(name)
            if name in ("id", "categories") or name in keep and name not in types:
                value = text(value)
            columns[name].append(value)
    schema = pa.schema(
        [(name, types.get(name, pa.string())) for name in columns],
    )
    return pa.table(columns, schema=schema)


def count_lines(path: str) -> int:
    """Records in a local file as `JsonlLines` yields them (non-blank lines), without holding
    the file."""
    with open(path, "rb") as handle:
        return sum(not is_blank(raw, n) for n, raw in enumerate(handle, start=1))


def parquet_rows(path: str) -> int:
    """Rows in a Parquet file, from its footer (one small read, also for URLs)."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        return int(pq.ParquetFile(handle).metadata.num_rows)


def _count_lines(batch: pa.Table) -> dict[str, list[int]]:
    return {"lines": [_records_in(b) for b in batch.column("bytes").to_pylist()]}


def _records_in(data: bytes) -> int:
    return sum(not is_blank(raw, n) for n, raw in enumerate(split_lines(data), start=1))
