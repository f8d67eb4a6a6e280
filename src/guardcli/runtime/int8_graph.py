"""The per-row rewrite of a dynamic-INT8 ONNX graph (see runtime.int8_rows for why).

Pure graph surgery on an `onnx.ModelProto`: find the per-tensor dynamic quantizers, and replace
each with per-row (per token) symmetric activation quantization feeding the same integer MatMuls.
No file I/O here; runtime.int8_rows loads, caches and saves.
"""

from __future__ import annotations

from guardcli.runtime.onnx_opset import BLOCKED_OPSET, can_raise_opset, raise_opset

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


def _consumers(nodes) -> dict[str, list]:
    """The nodes reading each value name."""
    consumers: dict[str, list] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def per_tensor_dynamic_nodes(model) -> list[str]:
    """Names of the nodes that quantize activations with one scale for a whole batch:
    DynamicQuantizeLinear feeding a MatMulInteger, and DynamicQuantizeMatMul."""
    consumers = _consumers(model.graph.node)
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


def _per_row_nodes(
    onnx, x: str, q: str, scale: str, zero_point: str, prefix: str, opset: int, width: int | None
):
    """Nodes computing, for each row of `x` (its last axis), q = round(x / s) + 128 as uint8 with
    s = max(max|x|, eps) / 127, the scale s (shape [..., 1]) and a scalar zero point 128.

    With the row `width` known and opset 21 (blocked quantization), one QuantizeLinear of blocks
    the width of a row does the division, rounding (half to even) and cast in one pass; else
    Div, Round, Add and Cast do the same, each a pass over the activation (1.3-3.6x slower:
    benchmarks/int8_quantizer.py)."""
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
    one_pass = bool(width) and opset >= BLOCKED_OPSET
    consts = {"eps": ROW_SCALE_EPS, "qmax": 127.0, **({} if one_pass else {"offset": 128.0})}
    for key, value in consts.items():
        name = f"{prefix}/{key}"
        nodes.append(
            h.make_node("Constant", [], [name], value=h.make_tensor(name, t.FLOAT, [], [value]))
        )
    nodes.append(
        h.make_node(
            "Constant", [], [zero_point], value=h.make_tensor(zero_point, t.UINT8, [], [128])
        )
    )
    nodes += [
        h.make_node("Max", [f"{prefix}/max", f"{prefix}/eps"], [f"{prefix}/absmax"]),
        h.make_node("Div", [f"{prefix}/absmax", f"{prefix}/qmax"], [scale]),
    ]
    if one_pass:
        # Blocked QuantizeLinear takes a zero point of the scale's shape: 128 for every row.
        nodes += [
            h.make_node("Shape", [scale], [f"{prefix}/rows"]),
            h.make_node(
                "ConstantOfShape",
                [f"{prefix}/rows"],
                [f"{prefix}/row_zp"],
                value=h.make_tensor(f"{prefix}/zp128", t.UINT8, [1], [128]),
            ),
            h.make_node(
                "QuantizeLinear",
                [x, scale, f"{prefix}/row_zp"],
                [q],
                axis=-1,
                block_size=width,
            ),
        ]
    else:
        nodes += [
            h.make_node("Div", [x, scale], [f"{prefix}/scaled"]),
            h.make_node("Round", [f"{prefix}/scaled"], [f"{prefix}/rounded"]),
            h.make_node("Add", [f"{prefix}/rounded", f"{prefix}/offset"], [f"{prefix}/shifted"]),
            h.make_node("Cast", [f"{prefix}/shifted"], [q], to=t.UINT8),
        ]
    for i, node in enumerate(nodes):
        if not node.name:
            node.name = f"{prefix}/{node.op_type}_{i}"
    return nodes


def _row_width(node, consumers: dict[str, list], weights: dict[str, int]) -> int | None:
    """The length of the rows `node` quantizes: the first dimension of the weight its integer
    MatMul(s) multiply by (None when that is not a known constant)."""
    if node.op_type == "DynamicQuantizeMatMul":
        return weights.get(node.input[1])
    widths = {
        weights.get(c.input[1])
        for c in consumers.get(node.output[0], [])
        if c.op_type in INTEGER_MATMULS
    } - {None}
    return widths.pop() if len(widths) == 1 else None


def _weight_rows(model) -> dict[str, int]:
    """First dimension of each 2-D constant (initializer or Constant node) of `model`."""
    rows = {t.name: t.dims[0] for t in model.graph.initializer if len(t.dims) == 2}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            dims = node.attribute[0].t.dims
            if len(dims) == 2:
                rows[node.output[0]] = dims[0]
    return rows


def _scale_last(onnx, nodes: list, row_scales: set[str], own: set[int], outputs: set[str]) -> bool:
    """Turn each `Cast(MatMulInteger(q, w)) * (row_scale * w_scale)` that dynamic quantization
    wrote into `MatMulIntegerToFloat(q, w, 1, w_scale) * row_scale`, in place: the fused kernel
    applies the weight scales as it writes the product, and the row scale is one more pass.
    (onnxruntime would otherwise fuse the first form into a MatMulIntegerToFloat that reads the
    row scales as one number.) Returns False, changing nothing, if some use of a row scale is not
    of that form. `own`: the nodes the rewrite made (they use the scales as meant)."""
    producers = {o: n for n in nodes for o in n.output}
    consumers = _consumers(nodes)
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
    # Blocked QuantizeLinear needs opset 21: the graph moves there when it can and some
    # quantizer's row width is known; otherwise every quantizer takes the four ops.
    widths: dict[str, int | None] = {}
    if can_raise_opset(model, opset):
        consumers, weights = _consumers(model.graph.node), _weight_rows(model)
        widths = {
            n.name: _row_width(n, consumers, weights) for n in model.graph.node if n.name in targets
        }
    blocked = any(widths.values())
    source_opset, opset = opset, max(opset, BLOCKED_OPSET) if blocked else opset
    h = onnx.helper
    out: list = []
    row_scales: set[str] = set()
    own: set[int] = set()  # nodes that use a row scale as the rewrite means them to
    quantized = {}  # per-row quantized activation -> (its scale, its zero point)
    for i, node in enumerate(model.graph.node):
        prefix = f"{node.name or node.op_type + str(i)}/per_row"
        if node.name in targets and node.op_type == "DynamicQuantizeLinear":
            q, scale, zp = node.output
            width = widths.get(node.name)
            nodes = _per_row_nodes(onnx, node.input[0], q, scale, zp, prefix, opset, width)
            row_scales.add(scale)
            quantized[q] = (scale, zp)
        elif node.name in targets:  # DynamicQuantizeMatMul(A, B, b_scale, b_zp?, bias?)
            q, scale, zp = f"{prefix}/q", f"{prefix}/scale", f"{prefix}/zp"
            width = widths.get(node.name)
            nodes = _per_row_nodes(onnx, node.input[0], q, scale, zp, prefix, opset, width)
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
    if blocked:
        raise_opset(onnx, model, source_opset)
    # The old scales were scalars: drop shape annotations of every value the rewrite produced.
    rewritten = {o for n in out for o in n.output}
    keep = [v for v in model.graph.value_info if v.name not in rewritten]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    entry = model.metadata_props.add()
    entry.key, entry.value = PER_ROW_METADATA, str(len(targets))
    return len(targets)
