"""Per-row activation quantization for dynamic-INT8 ONNX graphs (batch invariance).

onnxruntime's dynamic quantization (DynamicQuantizeLinear -> MatMulInteger, fused at load into
DynamicQuantizeMatMul) gives each activation tensor one scale, max - min over the whole batch,
padding included: a text's score then depends on what else shares its batch, and one request
with extreme activations coarsens the quantization of every request batched with it. Here each
row (token) of an activation gets its own symmetric scale, max|x| / 127 of that row alone, so a
row's result depends on that row only. The weights are untouched: a published per-tensor graph
is rewritten at load time (needs the `onnx` package) and cached beside it; without `onnx` it
runs one row at a time.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import shutil
import tempfile
from pathlib import Path

from guardcli.core.paths import CACHE_FOLDER, cache_dir, writable
from guardcli.runtime.int8_graph import (  # noqa: F401 - imported from here
    INTEGER_MATMULS,
    PER_ROW_METADATA,
    ROW_SCALE_EPS,
    UNIT_SCALE,
    per_tensor_dynamic_nodes,
    to_per_row_activations,
)

log = logging.getLogger("guardcli")

# Bumped when the rewrite changes, so cached rewrites of an older form are not reused.
REWRITE_VERSION = 2
# Op types whose presence marks per-tensor dynamic activation quantization.
PER_TENSOR_OPS = (b"DynamicQuantizeLinear", b"DynamicQuantizeMatMul")


def quantizes_per_tensor(path: Path) -> bool:
    """Whether the ONNX file at `path` holds per-tensor dynamic activation quantization: a scan
    of its bytes for the op types (no `onnx` package needed; a graph rewritten per row names
    neither)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return any(data.find(op) >= 0 for op in PER_TENSOR_OPS)
    except (OSError, ValueError):  # an empty or unreadable file: onnxruntime will say so
        return False


def rewrite_file(src: Path, dst: Path) -> int:
    """Write `src` rewritten per row to `dst` (weights over 2 GB in one `<name>.data` file
    beside it). Returns the number of quantizers rewritten; 0 writes nothing."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    _read_external_data(model, src.parent)
    count = to_per_row_activations(model)
    if count:
        save_graph(model, dst)
    return count


def _read_external_data(model, folder: Path) -> None:
    """Read weights kept in external files into the model. By hand, not with onnx's loader:
    that refuses files reached through a link, and the Hugging Face cache links every file."""
    from onnx import TensorProto

    handles: dict[str, object] = {}
    try:
        for tensor in model.graph.initializer:
            if tensor.data_location != TensorProto.EXTERNAL:
                continue
            info = {e.key: e.value for e in tensor.external_data}
            name = info["location"]
            if name not in handles:
                handles[name] = open(folder / name, "rb")  # noqa: SIM115 - closed below
            f = handles[name]
            f.seek(int(info.get("offset", 0)))  # type: ignore[attr-defined]
            length = info.get("length")
            tensor.raw_data = f.read(int(length)) if length else f.read()  # type: ignore[attr-defined]
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
    finally:
        for f in handles.values():
            f.close()  # type: ignore[attr-defined]


def save_graph(model, dst: Path) -> None:
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    data = dst.with_name(dst.name + ".data")
    if data.exists():
        data.unlink()
    weights = sum(t.ByteSize() for t in model.graph.initializer)
    onnx.save_model(
        model,
        str(dst),
        save_as_external_data=weights > 2**31 - 64 * 2**20,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )


def _rows_path(path: Path) -> Path:

    stat = path.stat()
    key = f"{path.stem}.{stat.st_size}-{stat.st_mtime_ns}.rows{REWRITE_VERSION}.onnx"
    beside = path.parent / CACHE_FOLDER
    if writable(beside):
        return beside / key
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "per-row" / where / key


class PerRowGraph:
    """The graph to load for `path`: `path` itself when it has no per-tensor dynamic
    quantization, else its per-row rewrite (`rewritten`), cached; `rows_alone` when no rewrite
    could be made (no `onnx` package, or an unfamiliar graph) and the caller must run one row at
    a time. A one-line note on stderr (logger `guardcli`) says which."""

    def __init__(self, path: Path, *, cache: bool = True):
        self.source = Path(path)
        self.path = self.source
        self.rewritten = False
        self.rows_alone = False
        self._tmp: tempfile.TemporaryDirectory | None = None
        if not quantizes_per_tensor(self.source):
            return
        try:
            import onnx  # noqa: F401
        except ImportError:
            self._alone("the 'onnx' package is not installed (install guardcli[export])")
            return
        target = _rows_path(self.source) if cache else None
        if target is not None and target.exists():
            self._use(target)
            return
        if target is None:
            from guardcli.core.paths import cache_dir

            work = cache_dir() / "tmp"
            work.mkdir(parents=True, exist_ok=True)
            self._tmp = tempfile.TemporaryDirectory(dir=work)
            final = Path(self._tmp.name) / self.source.name
        else:
            final = target
        # Written in a folder of its own, then moved: readers see a whole file or none.
        scratch = Path(tempfile.mkdtemp(prefix=".rows-", dir=final.parent))
        try:
            count = rewrite_file(self.source, scratch / final.name)
            if not count:
                self._alone("its graph is not of the form onnxruntime's dynamic quantizer writes")
                return
            data = scratch / (final.name + ".data")
            if data.exists():
                os.replace(data, final.with_name(final.name + ".data"))
            os.replace(scratch / final.name, final)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._use(final)

    def _use(self, path: Path) -> None:
        self.path = path
        self.rewritten = True
        log.warning(
            "note: %s quantizes activations per tensor (a score would depend on its batch); "
            "running it rewritten to per-row scales",
            self.source.name,
        )

    def _alone(self, why: str) -> None:
        self.rows_alone = True
        log.warning(
            "note: %s quantizes activations per tensor (a score would depend on its batch) and "
            "%s: running one row at a time",
            self.source.name,
            why,
        )
