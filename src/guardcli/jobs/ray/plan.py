"""Planning a Ray run: which files, which format, how many actors, which cluster."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any

from guardcli.core.errors import input_error, missing_extra

if TYPE_CHECKING:
    pass

OUTPUT_FORMATS = ("jsonl", "parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")
GLOB_CHARS = "*?["
# Records per actor call: as local classify's chunks, so the length buckets fill alike.
ROWS_PER_CALL = 256
# Records per block handed to an actor: small enough to spread a modest file over every actor
# (a file is read as one block), large enough that per-task overhead stays negligible.
ROWS_PER_BLOCK = 1024
ROWS_PER_SHARD = 100_000


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
