"""The model card's recipes for the FP16 and dynamic-INT8 variants of an FP32 ONNX model."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from guardcli.core.errors import GuardError, missing_extra
from guardcli.core.paths import cache_dir

# ONNX protobufs cannot exceed 2 GB; larger models keep weights in one external-data file.
PROTOBUF_LIMIT = 2**31 - 1
# Node-name fragments of the RMSNorm subgraphs that must stay FP32 (TorchScript export keeps
# module paths in node names, e.g. /model/layers.3/input_layernorm/Pow).
FP16_KEEP_NODE_PATTERNS = ("layernorm", "q_norm", "k_norm", "/model/norm")
# The card keeps every MLP down_proj MatMul in FP32 in the INT8 variant.
INT8_KEEP_FLOAT_DEFAULT = ("down_proj",)


def _onnx():
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise missing_extra("export", "Making ONNX variants") from exc
    return onnx


def save_onnx(model, path: Path, *, force_external: bool = False) -> None:
    """Save `model`, with all weights in one `<name>_data` file when it is over 2 GB."""
    onnx = _onnx()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Sum per tensor: ByteSize() of a whole model over 2 GB fails to serialize.
    weights = sum(t.ByteSize() for t in model.graph.initializer)
    external = force_external or weights > PROTOBUF_LIMIT - 64 * 2**20
    data = path.with_name(path.name + "_data")
    if data.exists():
        data.unlink()
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )


def export_torchscript(module, args: tuple, path: Path, **export_kwargs) -> None:
    """TorchScript ONNX export (`dynamo=False`, which keeps module paths in node names) into a
    scratch folder, then saved as `path` with all weights in one external-data file: above 2 GB
    the exporter writes one file per tensor."""
    import torch

    onnx = _onnx()
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = path.with_name(path.stem + ".raw")
    raw.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose (dynamo=False): not news to a user.
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript", Warning)
            torch.onnx.export(module, args, str(raw / "model.onnx"), dynamo=False, **export_kwargs)
        save_onnx(onnx.load(str(raw / "model.onnx")), path)
    finally:
        for f in sorted(raw.glob("*")):
            f.unlink()
        raw.rmdir()


def _linked(path: Path) -> bool:
    return path.is_symlink() or path.stat().st_nlink > 1


@contextmanager
def unlinked_graph(src: Path) -> Iterator[Path]:
    """`src`, or a private copy of it and its external data when any of them is a symbolic or
    hard link (the Hugging Face cache links every file): onnx refuses to load external data
    through a link, so the quantizers would fail on such a folder."""
    onnx = _onnx()
    graph = onnx.load(str(src), load_external_data=False).graph
    data = {
        entry.value
        for tensor in graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    files = [src, *(src.parent / name for name in sorted(data))]
    if not any(_linked(f) for f in files if f.exists()):
        yield src
        return

    work = cache_dir() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        for f in files:
            if f.exists():
                shutil.copyfile(f, Path(tmp) / f.name)  # follows links: a plain file
        yield Path(tmp) / src.name


def model_size(path: Path) -> int:
    """Bytes on disk of a model file plus its weights beside it: ONNX external data
    (`<name>_data`, or `<name>.data` as onnxruntime's quantizer writes it) or OpenVINO's `.bin`."""
    total = path.stat().st_size
    sidecars = [path.with_name(path.name + "_data"), path.with_name(path.name + ".data")]
    if path.suffix == ".xml":
        sidecars.append(path.with_suffix(".bin"))
    return total + sum(p.stat().st_size for p in sidecars if p.exists())


def _matches(names: Iterable[str], patterns: Iterable[str]) -> list[str]:
    regexes = [re.compile(re.escape(p)) for p in patterns]
    return [n for n in names if any(r.search(n) for r in regexes)]


def to_fp16(src: Path, dst: Path, *, keep_io_types: bool | list[str] = True) -> None:
    """FP16 cast keeping RMSNorm pieces and the graph's inputs/outputs in FP32 (`keep_io_types`:
    True, or the names of the inputs/outputs to keep; the others become FP16)."""
    onnx = _onnx()
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    graph = onnx.load(str(src), load_external_data=False).graph
    keep = _matches((n.name for n in graph.node), FP16_KEEP_NODE_PATTERNS)
    ops = [
        *DEFAULT_OP_BLOCK_LIST,
        "SimplifiedLayerNormalization",
        "SkipSimplifiedLayerNormalization",
    ]
    # Passing the path lets shape inference run by file, which works above 2 GB.
    fp16 = convert_float_to_float16(
        str(src), keep_io_types=keep_io_types, op_block_list=ops, node_block_list=keep
    )
    save_onnx(fp16, dst)


def int8_excluded_nodes(path: Path, keep_float: Iterable[str]) -> list[str]:
    """MatMul nodes to keep in float: matched by node name or by their weight's name."""
    onnx = _onnx()
    graph = onnx.load(str(path), load_external_data=False).graph
    patterns = list(keep_float)
    excluded = []
    for node in graph.node:
        if node.op_type != "MatMul":
            continue
        if _matches([node.name, *node.input], patterns):
            excluded.append(node.name)
    return excluded


def to_int8_dynamic(
    src: Path, dst: Path, *, keep_float: Iterable[str] = INT8_KEEP_FLOAT_DEFAULT
) -> list[str]:
    """INT8 weights per channel (QInt8) and activations quantized at run time per row (per
    token), keeping matched MatMuls in FP32. Returns the kept nodes.

    onnxruntime's quantize_dynamic gives each activation tensor one scale for the whole batch,
    so a text's score would depend on the rest of its batch; its graph is rewritten to one
    symmetric scale per row (runtime.int8_rows), which makes every row's result its own."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from guardcli.runtime.int8_rows import rewrite_file

    excluded = int8_excluded_nodes(src, keep_float)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".int8-") as tmp:
        per_tensor = Path(tmp) / "per_tensor.onnx"
        quantize_dynamic(
            str(src),
            str(per_tensor),
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            use_external_data_format=model_size(src) > PROTOBUF_LIMIT,
        )
        rows = Path(tmp) / dst.name
        if not rewrite_file(per_tensor, rows):
            raise GuardError(f"Could not rewrite the INT8 graph of {src} to per-row scales.")
        for stale in (dst.with_name(dst.name + ".data"), dst.with_name(dst.name + "_data")):
            if stale.exists():
                stale.unlink()
        data = rows.with_name(rows.name + ".data")
        if data.exists():
            os.replace(data, dst.with_name(dst.name + ".data"))
        os.replace(rows, dst)
    return excluded
