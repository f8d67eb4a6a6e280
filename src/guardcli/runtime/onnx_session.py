"""onnxruntime sessions: threads from the usable cores, inputs read from the graph, and the
optimized graph cached beside the model so the next session loads it without optimizing again.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np

from guardcli.core import cpu
from guardcli.core.cpu import usable_cpus
from guardcli.core.errors import GuardError
from guardcli.core.paths import CACHE_FOLDER, cache_dir
from guardcli.core.paths import writable as _writable
from guardcli.core.timings import record
from guardcli.runtime.int8_rows import PerRowGraph


def feed_for(
    names: list[str], input_ids: np.ndarray, attention_mask: np.ndarray, path: Path
) -> dict[str, np.ndarray]:
    feed: dict[str, np.ndarray] = {}
    for name in names:
        if name == "input_ids":
            feed[name] = input_ids
        elif name == "attention_mask":
            feed[name] = attention_mask
        elif name == "position_ids":
            feed[name] = np.clip(np.cumsum(attention_mask, axis=1) - 1, 0, None)
        elif name == "token_type_ids":
            feed[name] = np.zeros_like(input_ids)
        else:
            raise GuardError(f"{path.name} expects an input {name!r} guardcli cannot feed.")
    return feed


def _cpu_key() -> str:
    # ORT_ENABLE_ALL may write layout choices for this CPU into the graph: key by the CPU too.

    info = cpu.read_cpu()
    return hashlib.sha256(f"{info.model}|{sorted(info.flags)}".encode()).hexdigest()[:8]


def optimized_path(path: Path, ort_version: str) -> Path:
    """Where the optimized form of `path` lives: keyed by the file's size and mtime, the
    onnxruntime version and the CPU. Beside the model when its folder is writable, else in
    guardcli's cache folder."""

    path = Path(path)
    stat = path.stat()
    key = f"{path.stem}.{stat.st_size}-{stat.st_mtime_ns}.ort{ort_version}.{_cpu_key()}.onnx"
    beside = path.parent / CACHE_FOLDER
    if path.parent.match(CACHE_FOLDER):  # a graph guardcli rewrote into that folder already
        beside = path.parent
    if _writable(beside):
        return beside / key
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "optimized" / where / key


def cache_enabled() -> bool:
    """GUARD_GRAPH_CACHE=0 turns the optimized-graph and compiled-blob caches off (they hold
    about one more copy of each model's weights on disk)."""
    return os.environ.get("GUARD_GRAPH_CACHE", "1").strip().lower() not in {"0", "false", "no"}


def _import_ort():
    import sys

    if "onnxruntime" in sys.modules:
        return sys.modules["onnxruntime"]
    start = time.perf_counter()
    import onnxruntime as ort

    record("import onnxruntime", time.perf_counter() - start)
    return ort


class OnnxSession:
    """One ONNX model on the CPU execution provider.

    With `cache` (the default) the first session saves its optimized graph (weights in an external
    file) and later sessions load that with graph optimization off, which cuts session load.

    A dynamic-INT8 graph that quantizes activations per tensor is run rewritten to per-row scales,
    or one row at a time (see int8_rows), so that every row's result is the one it gets alone;
    `per_row=False` runs it as it is (benchmarks of the old behaviour only)."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        cache: bool = True,
        prepack: bool = True,
        per_row: bool = True,
    ):
        ort = _import_ort()
        start = time.perf_counter()
        self.path = Path(path)
        self.rows_alone = False
        self.graph: PerRowGraph | None = None
        if per_row:
            self.graph = PerRowGraph(self.path, cache=cache and cache_enabled())
            self.rows_alone = self.graph.rows_alone
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or usable_cpus()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        if not prepack:
            # Prepacking lays weights out for the GEMM kernels once per session: about a second
            # for a 0.6B model, repaid only over many batches, so a short run skips it.
            opts.add_session_config_entry("session.disable_prepacking", "1")
        source = self.graph.path if self.graph is not None else self.path
        self.optimized: Path | None = None
        self.cache_hit = False
        if cache and cache_enabled():
            try:
                self.optimized = optimized_path(source, ort.__version__)
            except OSError:
                self.optimized = None
        if self.optimized is not None and self.optimized.exists():
            source, self.cache_hit = self.optimized, True
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        elif self.optimized is not None and _writable(self.optimized.parent):
            # Written in a folder of its own, then moved: readers see a whole file or none.
            tmp = self.optimized.parent / f".tmp-{os.getpid()}" / self.optimized.name
            tmp.parent.mkdir(exist_ok=True)
            opts.optimized_model_filepath = str(tmp)
            opts.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", tmp.name + ".data"
            )
            opts.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
            )
        try:
            self.session = ort.InferenceSession(
                str(source), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            if self.cache_hit:  # a damaged cache entry: drop it and optimize again
                _remove(self.optimized)
                self.__init__(  # type: ignore[misc]
                    path, threads=threads, cache=False, prepack=prepack, per_row=per_row
                )
                return
            raise GuardError(
                f"onnxruntime could not load {path}: {exc}",
                hint="The file may be incomplete: fetch the variant again, or pick another one.",
            ) from exc
        if opts.optimized_model_filepath and self.optimized is not None:
            _publish(Path(opts.optimized_model_filepath), self.optimized)
        record("session load", time.perf_counter() - start)
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        if self.rows_alone and len(input_ids) > 1:
            return np.concatenate(
                [self.run(*alone(input_ids, attention_mask, r)) for r in range(len(input_ids))]
            )
        feed = feed_for(self.input_names, input_ids, attention_mask, self.path)
        try:
            return self.session.run([self.output_name], feed)[0]
        except Exception as exc:
            raise GuardError(f"onnxruntime failed on {self.path.name}: {exc}") from exc


def alone(input_ids: np.ndarray, attention_mask: np.ndarray, row: int):
    """Row `row` of a padded batch as a batch of one without its padding."""
    keep = attention_mask[row] != 0
    ids = input_ids[row][keep][None, :]
    return ids, np.ones_like(ids)


def _publish(tmp: Path, final: Path) -> None:
    """Move the optimized graph and its weights (named after the final graph) into place,
    weights first, so a reader that finds the graph finds its weights."""
    data = tmp.with_name(tmp.name + ".data")
    try:
        if tmp.exists():
            if data.exists():
                os.replace(data, final.with_name(final.name + ".data"))
            os.replace(tmp, final)
    except OSError:  # the cache is an optimisation: never fail a run over it
        pass
    finally:
        _remove(tmp)
        try:
            tmp.parent.rmdir()
        except OSError:
            pass


def _remove(path: Path | None) -> None:
    if path is None:
        return
    for p in (path, path.with_name(path.name + ".data")):
        try:
            p.unlink()
        except OSError:
            pass
