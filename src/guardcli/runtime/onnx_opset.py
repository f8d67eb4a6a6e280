"""Moving an ONNX graph's default domain to opset 21, where QuantizeLinear quantizes in blocks
(runtime.int8_graph's one-pass per-row quantizer needs it). Graph surgery only."""

from __future__ import annotations

# The opset whose QuantizeLinear quantizes in blocks (a scale per row); the reductions whose
# axes became an input at opset 18 (ReduceSum's at 13).
BLOCKED_OPSET = 21
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


def can_raise_opset(model, opset: int) -> bool:
    """Whether `model` can move to opset 21 by `raise_opset`: from 13 on, the operators it
    may use changed between there and 21 only by the reductions' axes (and by added types and
    attributes); a graph with subgraphs (If, Loop) is left alone."""
    if opset >= BLOCKED_OPSET:
        return True
    graph_attr = 5  # AttributeProto.GRAPH
    return opset >= 13 and not any(
        a.type in (graph_attr, graph_attr + 5) for n in model.graph.node for a in n.attribute
    )


def raise_opset(onnx, model, opset: int) -> None:
    """Move `model`'s default domain to opset 21: the reductions' `axes` attribute becomes
    their second input (opset 18)."""
    if opset < 18:
        h = onnx.helper
        nodes = []
        for i, node in enumerate(model.graph.node):
            axes = next((a for a in node.attribute if a.name == "axes"), None)
            if node.op_type in _REDUCTIONS and node.domain in ("", "ai.onnx") and axes:
                name = f"{node.name or node.op_type + str(i)}/axes"
                value = h.make_tensor(name, onnx.TensorProto.INT64, [len(axes.ints)], axes.ints)
                nodes.append(h.make_node("Constant", [], [name], value=value))
                node.attribute.remove(axes)
                node.input.append(name)
            nodes.append(node)
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = BLOCKED_OPSET
    model.ir_version = max(model.ir_version, 10)
