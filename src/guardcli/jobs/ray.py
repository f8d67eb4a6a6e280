"""Scale-out classify with Ray Data: the same guard and the same verdicts, across a cluster.

The pipeline is read -> classify (one guard per actor, `map_batches`) -> write shards, followed by
an independent count of the input, so that records in == records out is checked, not assumed.
JSONL is read as raw bytes and split into lines here (not with `read_json`), so every line goes
through `records.parse_line` and bad lines become the same error records as in local classify.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from guardcli.core.errors import ExitCode, GuardError, input_error, missing_extra
from guardcli.core.records import ReadOptions, is_blank, parse_line, record_from_object, strict_row
from guardcli.core.resolve import resolve
from guardcli.core.strict_json import dumps
from guardcli.core.verdicts import VERDICT_FIELDS, Record
from guardcli.families.loader import load_guard
from guardcli.jobs.classify import Summary

if TYPE_CHECKING:
    import pyarrow as pa

    from guardcli.families import Guard

OUTPUT_FORMATS = ("jsonl", "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")
GLOB_CHARS = "*?["
# Records per actor call: as local classify's chunks, so the length buckets fill alike.
ROWS_PER_CALL = 256
# Records per block handed to an actor: small enough to spread a modest file over every actor
# (a file is read as one block), large enough that per-task overhead stays negligible.
ROWS_PER_BLOCK = 1024
ROWS_PER_SHARD = 100_000


@dataclass(frozen=True)
class GuardSpec:
    """What each actor needs to load its own guard (small and picklable, unlike a Guard)."""

    model: str = "csam-guard"
    variant: str = "auto"
    threshold: float | None = None
    max_length: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    fail_closed: bool = False
    cache_dir: str | None = None
    backend: str | None = None
    thresholds: dict[str, float] | None = None
    dtype: str | None = None  # torch paths (OpenCC): None = auto

    def load(self) -> Guard:

        return load_guard(
            self.model,
            variant=self.variant,
            threshold=self.threshold,
            max_length=self.max_length,
            batch_size=self.batch_size,
            threads=self.threads,
            fail_closed=self.fail_closed,
            backend=self.backend,
            thresholds=self.thresholds,
            cache_dir=self.cache_dir,
            dtype=self.dtype,
        )


@dataclass
class ScaleResult:
    """What a Ray run did: the summary, the in/out counts that must agree, and where it wrote."""

    summary: Summary
    records_in: int
    records_out: int
    output: str
    shards: list[str] = field(default_factory=list)
    workers: int = 0
    cpus_per_worker: float = 0.0

    @property
    def complete(self) -> bool:
        return self.records_in == self.records_out

    def check(self) -> None:
        """Raise when records went missing (or were duplicated) on the way."""
        if not self.complete:
            raise GuardError(
                f"{self.records_in} records in but {self.records_out} written to {self.output}.",
                hint="Some blocks failed or were retried; rerun into an empty --output folder "
                "(with GUARD_DEBUG=1 and Ray's logs for the cause).",
                code=ExitCode.MODEL,
            )

    def line(self) -> str:
        return (
            f"{self.summary.line()}; {self.workers} workers x {self.cpus_per_worker:g} CPU; "
            f"{len(self.shards)} shard{'' if len(self.shards) == 1 else 's'} in {self.output}"
        )


# ----------------------------------------------------------------------------- planning


def is_uri(path: str) -> bool:
    return "://" in path


def expand_inputs(path_or_glob: str) -> list[str]:
    """A file, folder or glob (local or any fsspec URL) -> the sorted files it names."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(path_or_glob)
    except ImportError as exc:  # s3fs, gcsfs... : pyarrow still reads single files
        if not any(c in path_or_glob for c in GLOB_CHARS) and path_or_glob.lower().endswith(
            (".jsonl", ".json", ".ndjson", ".txt", *PARQUET_SUFFIXES)
        ):
            return [path_or_glob]
        raise input_error(
            f"Listing {path_or_glob} needs an fsspec filesystem that is not installed ({exc}).",
            "Install it (pip install s3fs, gcsfs, adlfs...), or name single files.",
        ) from None
    if any(c in path for c in GLOB_CHARS):
        found = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isdir(path):
        found = [p for p in fs.find(path) if not os.path.basename(p).startswith((".", "_"))]
    elif fs.exists(path):
        found = [path]
    else:
        found = []
    if not found:
        raise input_error(
            f"No input files match {path_or_glob}.",
            "Give a file, a folder or a quoted glob ('data/*.jsonl', 's3://bucket/logs/*.jsonl').",
        )
    return sorted(fs.unstrip_protocol(p) if is_uri(path_or_glob) else p for p in found)


def input_format(files: list[str]) -> str:
    """Parquet by suffix, else JSONL (one record or plain text per line, as locally)."""
    kinds = {"parquet" if f.lower().endswith(PARQUET_SUFFIXES) else "jsonl" for f in files}
    if len(kinds) > 1:
        raise input_error(
            "The input mixes Parquet and JSONL files.", "Classify each format separately."
        )
    return kinds.pop()


def worker_plan(
    total_cpus: float, workers: int | None = None, cpus_per_worker: float | None = None
) -> tuple[int, float]:
    """How many actors, and the CPUs each reserves, leaving room for Ray's read/write tasks.

    Actors that reserve every CPU starve the read and write tasks, and the job hangs (measured on
    a 2-CPU machine), so by default one CPU stays free for I/O and a crowd of workers on a small
    machine gets fractional CPUs.
    """
    spare = max(total_cpus - 1.0, total_cpus / 2)
    if workers is not None and workers < 1:
        raise input_error("--workers must be at least 1.")
    if cpus_per_worker is not None and cpus_per_worker <= 0:
        raise input_error("--cpus-per-worker must be above 0.")
    if workers is None and cpus_per_worker is None:
        cpus_per_worker = 1.0 if spare >= 1 else spare
    if workers is None:
        assert cpus_per_worker is not None
        workers = max(1, math.floor(spare / cpus_per_worker + 1e-9))
    if cpus_per_worker is None:
        cpus_per_worker = min(1.0, math.floor(spare / workers * 100) / 100) or 0.01
    return workers, cpus_per_worker


def connect(address: str | None = None, *, quiet: bool = False) -> bool:
    """Join a Ray cluster (`auto`, `ray://host:10001`) or start a local one on the usable CPUs.

    Returns True when this call started Ray, so the caller knows to shut it down.
    """
    try:
        import ray
    except ImportError:
        raise missing_extra("ray", "guard classify --engine ray") from None
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "log_to_driver": not quiet,
        "logging_level": "error" if quiet else "warning",
    }
    if address in (None, "local") and not os.environ.get("RAY_ADDRESS"):
        from guardcli.core.cpu import usable_cpus

        kwargs.update(num_cpus=usable_cpus(), include_dashboard=False)
    else:
        kwargs["address"] = None if address == "local" else address
    ray.init(**kwargs)
    return True


# ----------------------------------------------------------------------------- the stages


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

    def __init__(self, spec: GuardSpec, read: ReadOptions, source: str, multi_file: bool):
        self.guard = spec.load()
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
        verdicts = self.guard.classify_records(self.records(batch.to_pylist()))
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


# ----------------------------------------------------------------------------- the job


def classify_with_ray(
    input_path: str,
    output: str,
    *,
    spec: GuardSpec,
    read: ReadOptions | None = None,
    output_format: str = "jsonl",
    workers: int | None = None,
    cpus_per_worker: float | None = None,
    address: str | None = None,
    progress: bool = True,
    rows_per_block: int = ROWS_PER_BLOCK,
    rows_per_shard: int = ROWS_PER_SHARD,
) -> ScaleResult:
    """Classify JSONL or Parquet files into shards under `output`, on a local or remote Ray.

    Verdicts are those of local `guard classify` on the same records (ids join them; order across
    shards is not kept). Call `ScaleResult.check()` to fail when records in != records out.
    """
    read = read or ReadOptions()
    if output_format not in OUTPUT_FORMATS:
        raise input_error(
            f"Unknown output format {output_format!r}.", f"Choose {' or '.join(OUTPUT_FORMATS)}."
        )
    if not is_uri(input_path):
        input_path = os.path.abspath(input_path)
    if not is_uri(output):
        output = os.path.abspath(output)
    if os.path.isdir(spec.model):  # actors do not share our working directory
        spec = replace(spec, model=os.path.abspath(spec.model))
    started = connect(address, quiet=not progress)
    try:
        import ray
        import ray.data

        files = expand_inputs(input_path)
        source = input_format(files)
        _prepare_output(output)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        if not progress:
            logging.getLogger("ray.data").setLevel(logging.ERROR)
        total = float(ray.cluster_resources().get("CPU", 1))
        workers, cpus = worker_plan(total, workers, cpus_per_worker)
        if started and workers * cpus >= total:
            raise input_error(
                f"{workers} workers x {cpus:g} CPU reserve all {total:g} CPUs, which starves "
                "Ray's read and write tasks: the job would hang.",
                "Use fewer --workers or a fractional --cpus-per-worker (e.g. 0.5).",
            )
        if spec.threads is None:
            spec = replace(spec, threads=max(1, round(cpus)))
        # Fail in seconds, with our message, rather than through a dying actor pool.
        ray.get(ray.remote(_resolve_model).options(num_cpus=0).remote(spec))
        start = time.perf_counter()
        if source == "parquet":
            ds = ray.data.read_parquet(files)
            if read.id_field not in ds.schema().names:
                raise input_error(
                    f"The Parquet input has no {read.id_field!r} column.",
                    "Parquet has no line numbers to fall back on: pass --id-field COLUMN.",
                )
            records_in = sum(parquet_rows(f) for f in files)
        else:
            raw = ray.data.read_binary_files(files, include_paths=True)
            local = not is_uri(input_path)
            root = os.path.commonpath([os.path.dirname(f) for f in files]) if local else ""
            ds = raw.flat_map(JsonlLines(root))
            if local:  # here, in streamed chunks: fast, and independent of Ray's reading
                records_in = sum(count_lines(f) for f in files)
            else:
                counts = ray.data.read_binary_files(files).map_batches(
                    _count_lines, batch_format="pyarrow"
                )
                records_in = sum(row["lines"] for row in counts.take_all())  # one row per file
        # At least a few blocks per actor, so a modest input still reaches every actor.
        per_block = min(rows_per_block, max(32, math.ceil(records_in / (workers * 4))))
        verdicts = ds.repartition(target_num_rows_per_block=per_block).map_batches(
            Classifier,
            fn_constructor_kwargs={
                "spec": spec,
                "read": read,
                "source": source,
                "multi_file": len(files) > 1,
            },
            batch_size=ROWS_PER_CALL,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=cpus,
        )
        shards_in = verdicts.repartition(target_num_rows_per_block=rows_per_shard)
        written = shards_in.map_batches(
            write_shard,  # type: ignore[arg-type]  # Ray's hint omits fn_kwargs
            fn_kwargs={"output": output, "fmt": output_format, "keep": read.keep},
            batch_size=None,
            batch_format="pyarrow",
            num_cpus=0.25,
        )
        summary = Summary()
        shards = []
        for row in written.iter_rows():
            shards.append(row["shard"])
            stats = json.loads(row["stats"])
            summary.records += stats["records"]
            summary.flagged += stats["flagged"]
            summary.errors += stats["errors"]
            summary.tokens += stats["tokens"]
            summary.truncated += stats["truncated"]
            for kind, n in stats["error_types"].items():
                summary.error_types[kind] = summary.error_types.get(kind, 0) + n
        summary.seconds = time.perf_counter() - start
        _remove_unreported(output, shards)
    except Exception as exc:
        err = guard_error_in(exc)
        if err is None:
            raise
        raise err from None
    finally:
        if started:
            import ray

            ray.shutdown()
    return ScaleResult(
        summary=summary,
        records_in=records_in,
        records_out=summary.records,
        output=output,
        shards=sorted(shards),
        workers=workers,
        cpus_per_worker=cpus,
    )


def _resolve_model(spec: GuardSpec) -> str:

    return str(resolve(spec.model, spec.variant, cache_dir=spec.cache_dir).path)


def guard_error_in(exc: BaseException) -> GuardError | None:
    """The GuardError a worker raised, out of Ray's wrappers (or out of their text, when an
    actor died and only its traceback came back)."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, GuardError):
            return GuardError(node.message, hint=node.hint, code=node.code)
        cause = getattr(node, "cause", None)
        node = cause if isinstance(cause, BaseException) else node.__cause__ or node.__context__
    marker = "guardcli.core.errors.GuardError: "
    text = str(exc)
    if marker in text:
        message, _, hint = text.rsplit(marker, 1)[1].strip().partition("\n")
        return GuardError(message, hint=hint or None, code=ExitCode.MODEL)
    return None


def _remove_unreported(output: str, shards: list[str]) -> None:
    """A write task that Ray retried may have left a shard nobody reported: its records are in
    a reported shard too, so it goes, or readers of the folder would see them twice."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(output)
    reported = {os.path.basename(s) for s in shards}
    for found in fs.ls(path, detail=False):
        name = os.path.basename(found)
        if name.startswith("part-") and name not in reported:
            fs.rm(found)


def _prepare_output(output: str) -> None:
    """A fresh folder: shards of an earlier run would make the in/out check meaningless."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(output)
    if fs.exists(path):
        if not fs.isdir(path):
            raise input_error(f"--output {output} is a file.", "Give a folder for the shards.")
        if any(os.path.basename(p).startswith("part-") for p in fs.ls(path, detail=False)):
            raise input_error(
                f"--output {output} already holds shards.", "Give an empty or new folder."
            )
    fs.makedirs(path, exist_ok=True)
