"""A Ray run from end to end: read -> classify -> write shards -> count, and what it did."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from guardcli.core.errors import ExitCode, GuardError, input_error
from guardcli.core.records import ReadOptions
from guardcli.core.resolve import resolve
from guardcli.core.spec import GuardSpec
from guardcli.jobs.classify import Summary

if TYPE_CHECKING:
    pass

from guardcli.jobs.ray.plan import (
    OUTPUT_FORMATS,
    ROWS_PER_BLOCK,
    ROWS_PER_CALL,
    ROWS_PER_SHARD,
    connect,
    expand_inputs,
    input_format,
    is_uri,
    worker_plan,
)
from guardcli.jobs.ray.stages import (
    Classifier,
    JsonlLines,
    _count_lines,
    count_lines,
    parquet_rows,
    write_shard,
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
    cache_mb: float | None = None,
) -> ScaleResult:
    """Classify JSONL or Parquet files into shards under `output`, on a local or remote Ray.

    Verdicts are those of local `guard classify` on the same records (ids join them; order across
    shards is not kept). Call `ScaleResult.check()` to fail when records in != records out.
    `cache_mb`: a verdict cache of that size in each worker (a repeat that reaches the worker
    which judged it first gets that verdict); None judges every record.
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
                "cache_mb": cache_mb,
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
