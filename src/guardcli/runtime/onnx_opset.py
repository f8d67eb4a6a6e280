"""Moving an ONNX graph's default domain to opset 21, where QuantizeLinear quantizes in blocks
(runtime.int8_graph's one-pass per-row quantizer needs it). Graph surgery only.

Only graphs made of operators whose meaning is the same from their opset to 21 move: the
reductions' `axes` attribute becomes an input (opset 18) and an equal Split gets `num_outputs`
(18); every other operator allowed here only gained types or attributes with the old default.
A graph with any other operator (GroupNormalization's scale and bias changed at 21, DFT's axis
and GridSample's modes at 20, ...) or with subgraphs stays where it is."""

from __future__ import annotations

BLOCKED_OPSET = 21
# The reductions whose axes became an input at opset 18 (ReduceSum's at 13).
_REDUCTIONS = {
    "ReduceMax",
    "ReduceMin",
    "ReduceMean",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
}
# Default-domain operators of transformer graphs whose meaning is unchanged from opset 13 to 21
# (beyond the two rewrites above): checked against ONNX's operator changelog.
_SAME_MEANING = _REDUCTIONS | set(
    """Abs Add And ArgMax ArgMin BatchNormalization Cast CastLike Ceil Clip Concat Constant
    ConstantOfShape Conv Cos CumSum DequantizeLinear Div Dropout DynamicQuantizeLinear Einsum
    Equal Erf Exp Expand Flatten Floor Gather GatherElements GatherND Gemm Greater GreaterOrEqual
    Identity IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log LogSoftmax MatMul
    MatMulInteger Max Mean Min Mod Mul Neg NonZero Not OneHot Or Pow QuantizeLinear Range
    Reciprocal ReduceSum Relu Reshape Round Shape Sigmoid Sign Sin Size Slice Softmax Softplus
    Split Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose Trilu Unsqueeze Where Xor""".split()
)
_GRAPH_ATTRIBUTES = (5, 10)  # AttributeProto.GRAPH, GRAPHS


def _default(node) -> bool:
    return node.domain in ("", "ai.onnx")


def can_raise_opset(model, opset: int) -> bool:
    """Whether `model` is at opset 21 or can move there by `raise_opset` (see the module)."""
    if opset >= BLOCKED_OPSET:
        return True
    if opset < 13:  # more operators took attributes for what are inputs now
        return False
    nodes = model.graph.node
    return all(not _default(n) or n.op_type in _SAME_MEANING for n in nodes) and not any(
        a.type in _GRAPH_ATTRIBUTES for n in nodes for a in n.attribute
    )


def raise_opset(onnx, model, opset: int) -> None:
    """Move `model`'s default domain from `opset` (13-20) to 21: reductions take their axes as
    an input, an equal Split states its `num_outputs`. A graph at 21 or above is left as is."""
    if opset >= BLOCKED_OPSET:
        return
    h = onnx.helper
    nodes = []
    for i, node in enumerate(model.graph.node):
        if _default(node) and opset < 18:
            axes = next((a for a in node.attribute if a.name == "axes"), None)
            if node.op_type in _REDUCTIONS and axes is not None:
                name = f"{node.name or node.op_type + str(i)}/axes"
                value = h.make_tensor(name, onnx.TensorProto.INT64, [len(axes.ints)], axes.ints)
                nodes.append(h.make_node("Constant", [], [name], value=value))
                node.attribute.remove(axes)
                node.input.append(name)
            elif node.op_type == "Split" and (len(node.input) < 2 or not node.input[1]):
                node.attribute.append(h.make_attribute("num_outputs", len(node.output)))
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = BLOCKED_OPSET
    model.ir_version = max(model.ir_version, 10)
