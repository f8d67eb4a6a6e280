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

log = logging.getLogger("guardcli")

# Bumped when the rewrite changes, so cached rewrites of an older form are not reused.
REWRITE_VERSION = 1
# Op types whose presence marks per-tensor dynamic activation quantization.
PER_TENSOR_OPS = (b"DynamicQuantizeLinear", b"DynamicQuantizeMatMul")


# Activations of an INT8 MatMul are quantized per row (per token): symmetric, scale
# max|x| / 127 of that row alone, stored as uint8 with zero point 128 so onnxruntime keeps its
# fast u8 x s8 kernels. Dynamic quantization's one scale per tensor made a row's score depend
# on every other row in the batch, padding included (DESIGN.md, batch invariance).
ROW_SCALE_EPS = 1e-12
# Metadata key a rewritten graph carries (value: the number of quantizers rewritten).
PER_ROW_METADATA = "guardcli.per_row_int8"
# The activation scale handed to MatMulIntegerToFloat (the row scales are applied after it).
UNIT_SCALE = "guardcli/per_row/unit_scale"


# Consumers of DynamicQuantizeLinear that multiply by its activation (MatMulIntegerToFloat is
# what onnxruntime's optimizer fuses MatMulInteger -> Cast -> Mul into).
INTEGER_MATMULS = ("MatMulInteger", "MatMulIntegerToFloat")


def per_tensor_dynamic_nodes(model) -> list[str]:
    """Names of the nodes that quantize activations with one scale for a whole batch:
    DynamicQuantizeLinear feeding a MatMulInteger, and DynamicQuantizeMatMul."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    for node in model.graph.node:
        if node.op_type == "DynamicQuantizeMatMul":
            found.append(node.name)
        elif node.op_type == "DynamicQuantizeLinear" and any(
            c.op_type in INTEGER_MATMULS for c in consumers.get(node.output[0], [])
        ):
            found.append(node.name)
    return found


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def _per_row_nodes(onnx, x: str, q: str, scale: str, zero_point: str, prefix: str, opset: int):
    """Nodes computing, for each row of `x` (its last axis), q = round(x / s) + 128 as uint8 with
    s = max(max|x|, eps) / 127, the scale s (shape [..., 1]) and a scalar zero point 128."""
    h = onnx.helper
    t = onnx.TensorProto
    nodes = [
        h.make_node("Abs", [x], [f"{prefix}/abs"], name=f"{prefix}/Abs"),
    ]
    if opset >= 18:
        axes = f"{prefix}/axes"
        nodes.append(
            h.make_node("Constant", [], [axes], value=h.make_tensor(axes, t.INT64, [1], [-1]))
        )
        nodes.append(
            h.make_node(
                "ReduceMax",
                [f"{prefix}/abs", axes],
                [f"{prefix}/max"],
                keepdims=1,
                name=f"{prefix}/ReduceMax",
            )
        )
    else:
        nodes.append(
            h.make_node(
                "ReduceMax",
                [f"{prefix}/abs"],
                [f"{prefix}/max"],
                axes=[-1],
                keepdims=1,
                name=f"{prefix}/ReduceMax",
            )
        )
    consts = {
        "eps": (t.FLOAT, ROW_SCALE_EPS),
        "qmax": (t.FLOAT, 127.0),
        "offset": (t.FLOAT, 128.0),
    }
    for key, (dtype, value) in consts.items():
        name = f"{prefix}/{key}"
        nodes.append(
            h.make_node("Constant", [], [name], value=h.make_tensor(name, dtype, [], [value]))
        )
    nodes.append(
        h.make_node(
            "Constant", [], [zero_point], value=h.make_tensor(zero_point, t.UINT8, [], [128])
        )
    )
    nodes += [
        h.make_node("Max", [f"{prefix}/max", f"{prefix}/eps"], [f"{prefix}/absmax"]),
        h.make_node("Div", [f"{prefix}/absmax", f"{prefix}/qmax"], [scale]),
        h.make_node("Div", [x, scale], [f"{prefix}/scaled"]),
        h.make_node("Round", [f"{prefix}/scaled"], [f"{prefix}/rounded"]),
        h.make_node("Add", [f"{prefix}/rounded", f"{prefix}/offset"], [f"{prefix}/shifted"]),
        h.make_node("Cast", [f"{prefix}/shifted"], [q], to=t.UINT8),
    ]
    for i, node in enumerate(nodes):
        if not node.name:
            node.name = f"{prefix}/{node.op_type}_{i}"
    return nodes


def _scale_last(onnx, nodes: list, row_scales: set[str], own: set[int], outputs: set[str]) -> bool:
    """Turn each `Cast(MatMulInteger(q, w)) * (row_scale * w_scale)` that dynamic quantization
    wrote into `MatMulIntegerToFloat(q, w, 1, w_scale) * row_scale`, in place: the fused kernel
    applies the weight scales as it writes the product, and the row scale is one more pass.
    (onnxruntime would otherwise fuse the first form into a MatMulIntegerToFloat that reads the
    row scales as one number.) Returns False, changing nothing, if some use of a row scale is not
    of that form. `own`: the nodes the rewrite made (they use the scales as meant)."""
    producers = {o: n for n in nodes for o in n.output}
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    plan = []  # (scale product Mul, final Mul, Cast, MatMulInteger, weight scale, row scale)
    for scale in row_scales:
        for m1 in consumers.get(scale, []):
            if id(m1) in own:
                continue
            if m1.op_type != "Mul" or len(m1.input) != 2:
                return False
            w_scale = m1.input[1] if m1.input[0] == scale else m1.input[0]
            users = consumers.get(m1.output[0], [])
            if not users or m1.output[0] in outputs:
                return False
            for m2 in users:
                if m2.op_type != "Mul" or len(m2.input) != 2:
                    return False
                other = m2.input[1] if m2.input[0] == m1.output[0] else m2.input[0]
                cast = producers.get(other)
                if cast is None or cast.op_type != "Cast" or len(consumers[other]) != 1:
                    return False
                mmi = producers.get(cast.input[0])
                if mmi is None or mmi.op_type != "MatMulInteger":
                    return False
                if len(consumers[cast.input[0]]) != 1 or other in outputs:
                    return False
                plan.append((m1, m2, cast, mmi, w_scale, scale))
    h = onnx.helper
    dead = {id(n) for m1, _, cast, mmi, *_ in plan for n in (m1, cast, mmi)}
    replaced = {}
    for _, m2, _, mmi, w_scale, scale in plan:
        partial = f"{m2.output[0]}/by_weight_scale"
        zps = list(mmi.input[2:4])
        fused = h.make_node(
            "MatMulIntegerToFloat",
            [mmi.input[0], mmi.input[1], UNIT_SCALE, w_scale, *zps],
            [partial],
            name=f"{mmi.name or partial}/per_row",
            domain="com.microsoft",
        )
        row = h.make_node("Mul", [partial, scale], [m2.output[0]], name=f"{partial}/by_row")
        replaced[id(m2)] = [fused, row]
    out = []
    for node in nodes:
        if id(node) in dead:
            continue
        out.extend(replaced.get(id(node), [node]))
    nodes[:] = out
    return True


def _integer_matmul(h, prefix: str, q, zp, b, b_zp, b_scale, row_scale, bias, result) -> list:
    """MatMulIntegerToFloat(q, b) with b_scale (activation scale 1), times the row scale, plus
    the bias: what onnxruntime's fused integer MatMuls compute, with a scale per row."""
    scaled = f"{prefix}/scaled_out" if bias else result
    nodes = [
        h.make_node(
            "MatMulIntegerToFloat",
            [q, b, UNIT_SCALE, b_scale, zp, *([b_zp] if b_zp else [])],
            [f"{prefix}/w"],
            name=f"{prefix}/MatMulIntegerToFloat",
            domain="com.microsoft",
        ),
        h.make_node("Mul", [f"{prefix}/w", row_scale], [scaled], name=f"{prefix}/MulRow"),
    ]
    if bias:
        nodes.append(h.make_node("Add", [scaled, bias], [result], name=f"{prefix}/Bias"))
    return nodes


def _opt(node, i: int) -> str:
    return node.input[i] if len(node.input) > i else ""


def to_per_row_activations(model) -> int:
    """Rewrite, in place, every per-tensor dynamic activation quantization of `model` (see
    `per_tensor_dynamic_nodes`) into per-row quantization; the weights are untouched. Returns
    the number of nodes rewritten; 0 (and the model unchanged) when its graph is not of the
    form onnxruntime's dynamic quantizer (or its optimizer) writes."""
    import onnx

    targets = set(per_tensor_dynamic_nodes(model))
    if not targets:
        return 0
    opset = _opset(model)
    h = onnx.helper
    out: list = []
    row_scales: set[str] = set()
    own: set[int] = set()  # nodes that use a row scale as the rewrite means them to
    quantized = {}  # per-row quantized activation -> (its scale, its zero point)
    for i, node in enumerate(model.graph.node):
        prefix = f"{node.name or node.op_type + str(i)}/per_row"
        if node.name in targets and node.op_type == "DynamicQuantizeLinear":
            q, scale, zp = node.output
            nodes = _per_row_nodes(onnx, node.input[0], q, scale, zp, prefix, opset)
            row_scales.add(scale)
            quantized[q] = (scale, zp)
        elif node.name in targets:  # DynamicQuantizeMatMul(A, B, b_scale, b_zp?, bias?)
            q, scale, zp = f"{prefix}/q", f"{prefix}/scale", f"{prefix}/zp"
            nodes = _per_row_nodes(onnx, node.input[0], q, scale, zp, prefix, opset)
            nodes += _integer_matmul(
                h,
                prefix,
                q,
                zp,
                node.input[1],
                _opt(node, 3),
                node.input[2],
                scale,
                _opt(node, 4),
                node.output[0],
            )
        elif node.op_type == "MatMulIntegerToFloat" and node.input[0] in quantized:
            # (A, B, a_scale, b_scale, a_zp?, b_zp?, bias?): fused by onnxruntime's optimizer,
            # it reads a_scale as one number; spelled out again with the row scale.
            scale, zp = quantized[node.input[0]]
            nodes = _integer_matmul(
                h,
                prefix,
                node.input[0],
                zp,
                node.input[1],
                _opt(node, 5),
                node.input[3],
                scale,
                _opt(node, 6),
                node.output[0],
            )
        else:
            out.append(node)
            continue
        own.update(id(n) for n in nodes)
        out += nodes
    outputs = {o.name for o in model.graph.output}
    if not _scale_last(onnx, out, row_scales, own, outputs):
        return 0
    model.graph.initializer.append(
        onnx.helper.make_tensor(UNIT_SCALE, onnx.TensorProto.FLOAT, [], [1.0])
    )
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    del model.graph.node[:]
    model.graph.node.extend(out)
    # The old scales were scalars: drop shape annotations of every value the rewrite produced.
    rewritten = {o for n in out for o in n.output}
    keep = [v for v in model.graph.value_info if v.name not in rewritten]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = PER_ROW_METADATA, str(len(targets))
    return len(targets)


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
