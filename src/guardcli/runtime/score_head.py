"""A causal LM graph whose head computes only the logits a caller reads.

Score mode of a generative guard reads the logits of a handful of verdict tokens at the last
position, while the exported head projects onto the whole vocabulary (151,936 columns for
Qwen3: ~0.3 GFLOP and 150-600 MB of weights read per forward pass). onnxruntime runs every node
of a graph whatever outputs are fetched, so an extra output would not save that work: here a
copy of the graph is made whose head weights keep only the columns of the wanted token ids. The
trunk is untouched (its weights stay in the source's external-data file, linked beside the copy),
and each kept column is computed exactly as before: a MatMul's output column depends on that
weight column alone, and per-channel INT8 scales and zero points are sliced with it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from guardcli.core.paths import CACHE_FOLDER, cache_dir, writable

# Bumped when the rewrite changes, so cached copies of an older form are not reused.
HEAD_VERSION = 1
LOGITS = "logits"
INT64 = 7  # onnx.TensorProto.INT64


def _tensor_array(tensor, folder: Path) -> np.ndarray:
    """An initializer's values, reading external data by hand (onnx's loader refuses links)."""
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        info = {e.key: e.value for e in tensor.external_data}
        with open(folder / info["location"], "rb") as f:
            f.seek(int(info.get("offset", 0)))
            length = info.get("length")
            raw = f.read(int(length)) if length else f.read()
        copy = TensorProto()
        copy.CopyFrom(tensor)
        del copy.external_data[:]
        copy.data_location = TensorProto.DEFAULT
        copy.raw_data = raw
        tensor = copy
    return numpy_helper.to_array(tensor)


def _ancestors(model, outputs: Sequence[str]) -> set[str]:
    """Names of every value the `outputs` are computed from."""
    producer = {o: n for n in model.graph.node for o in n.output}
    seen: set[str] = set()
    todo = list(outputs)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None:
            todo.extend(i for i in node.input if i)
    return seen


def restrict_head(model, ids: Sequence[int], folder: Path) -> int:
    """Rewrite `model` (an onnx ModelProto whose first output `logits` is [batch, vocab]) in
    place so that output is [batch, len(ids)], column j being token ids[j]'s logit. Returns the
    number of head tensors sliced; 0 means the graph is not of a form this understands (the
    head's weights are shared with the trunk, or a shape constant names the vocabulary) and
    `model` is left as it was."""
    from onnx import numpy_helper

    out = model.graph.output[0] if model.graph.output else None
    if out is None or out.name != LOGITS:
        return 0
    dims = out.type.tensor_type.shape.dim
    vocab = dims[-1].dim_value if len(dims) == 2 else 0
    if vocab <= 0 or not ids or any(not 0 <= int(i) < vocab for i in ids):
        return 0
    trunk = _ancestors(model, [o.name for o in model.graph.output[1:]])
    heads = [t for t in model.graph.initializer if t.dims and t.dims[-1] == vocab]
    if not heads or any(t.name in trunk for t in heads):
        return 0
    head_values = _ancestors(model, [LOGITS]) - trunk
    for node in model.graph.node:
        # A shape constant naming the vocabulary (a Reshape to [B, vocab]) would break.
        if node.op_type == "Constant" and node.output[0] in head_values:
            value = numpy_helper.to_array(node.attribute[0].t) if node.attribute else None
            if value is not None and value.dtype.kind in "iu" and (value == vocab).any():
                return 0
    head_names = {t.name for t in heads}
    for t in model.graph.initializer:
        if t.name in head_values and t.data_type == INT64 and t.name not in head_names:
            if (_tensor_array(t, folder) == vocab).any():  # a shape initializer
                return 0
    index = np.asarray(ids, dtype=np.int64)
    for t in heads:
        kept = np.ascontiguousarray(np.take(_tensor_array(t, folder), index, axis=-1))
        t.CopyFrom(numpy_helper.from_array(kept, t.name))
    dims[-1].dim_value = len(ids)
    del model.graph.value_info[:]
    return len(heads)


def _key(path: Path, ids: Sequence[int]) -> str:
    stat = path.stat()
    digest = hashlib.sha256(",".join(str(int(i)) for i in ids).encode()).hexdigest()[:12]
    return f"{path.stem}.{stat.st_size}-{stat.st_mtime_ns}.head{HEAD_VERSION}-{digest}.onnx"


def _folder(path: Path) -> Path:
    beside = path.parent / CACHE_FOLDER
    if writable(beside):
        return beside
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return cache_dir() / "score-head" / where


def _link_external(model, source: Path, folder: Path) -> None:
    """Make the external-data files `model` names reachable from `folder` (a link each)."""
    from onnx import TensorProto

    names = {
        e.value
        for t in model.graph.initializer
        if t.data_location == TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    }
    for name in names:
        _link((source / name).resolve(), folder / name)


def _link(target: Path, link: Path) -> None:
    """`link` to `target`: a hard link (onnxruntime refuses external data that a symlink takes
    out of the model's folder), or a symlink across filesystems."""
    if link.exists() and not link.is_symlink() and os.path.samefile(link, target):
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(target, tmp)
    except OSError:  # another filesystem
        if link.is_symlink() and link.resolve() == target:
            return
        os.symlink(target, tmp)
    os.replace(tmp, link)


def _harden_links(folder: Path) -> None:
    """Copies written before hard links linked their external data with symlinks: relink."""
    for link in folder.iterdir():
        if link.is_symlink() and link.exists():
            _link(link.resolve(), link)


def score_graph(path: Path, ids: Sequence[int]) -> Path | None:
    """The graph at `path` with its head restricted to `ids` (see `restrict_head`), written
    once beside it (or under guardcli's cache) and reused; None when the graph's head is not
    of a form this understands (callers then read the full logits)."""
    import onnx

    path = Path(path)
    folder = _folder(path)
    final = folder / _key(path, ids)
    if final.exists():
        _harden_links(folder)
        return final
    model = onnx.load(str(path), load_external_data=False)
    if not restrict_head(model, ids, path.parent):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    _link_external(model, path.parent, folder)
    # Written under a scratch name, then moved: readers see a whole file or none.
    scratch = Path(tempfile.mkdtemp(prefix=".head-", dir=folder))
    try:
        onnx.save_model(model, str(scratch / final.name))
        os.replace(scratch / final.name, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final
