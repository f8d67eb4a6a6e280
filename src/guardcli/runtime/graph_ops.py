"""A model's arithmetic, read from its ONNX graph: the MatMul/Gemm operations per token.

Each MatMul or Gemm does 2*M*N*K operations (a multiply and an add per term). The graph's
inputs get concrete shapes (batch 1, a sequence of `s` tokens) and ONNX shape inference with
data propagation fills in every intermediate shape, the attention MatMuls' [heads, s, s]
included. Weight MatMuls (one operand an initializer) grow with s, the attention ones with s²,
and a classifier head on the pooled token not at all, so the count is taken at three lengths
and fitted exactly: ops(s) = c0 + c1*s + c2*s² per sequence. A fused attention node
(onnxruntime's GroupQueryAttention) counts what its two MatMuls would: 4*s*s*hidden.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIT_LENGTHS = (8, 16, 32)


@dataclass(frozen=True)
class GraphOps:
    """MatMul operations of one sequence of s tokens: c0 + c1*s + c2*s²."""

    c0: float  # once per sequence (a classifier head)
    c1: float  # per token (the weight MatMuls)
    c2: float  # per token per token (attention: scores and their product with V)
    # The weight MatMuls per token: ((K, N), how many) — the shapes a GEMM limit is timed on.
    weights: dict[tuple[int, int], int] = field(default_factory=dict)
    unresolved: int = 0  # MatMuls whose shapes inference could not fill (not counted)

    def per_sequence(self, tokens: float) -> float:
        return self.c0 + self.c1 * tokens + self.c2 * tokens * tokens

    def per_token(self, tokens: float) -> float:
        """Operations per token of a sequence of `tokens` tokens."""
        return self.per_sequence(tokens) / tokens

    def as_dict(self, tokens: float) -> dict[str, Any]:
        return {
            "ops_per_token": self.per_token(tokens),
            "weight_ops_per_token": self.c1,
            "attention_ops_per_token": self.c2 * tokens,
            "once_per_sequence_ops": self.c0,
            "unresolved_matmuls": self.unresolved,
        }


def _dims(value_info: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.shape.dim]


def _count(model: Any, seq: int) -> tuple[float, dict[tuple[int, int], int], int]:
    """(ops of one sequence of `seq` tokens, the per-token weight shapes, unresolved)."""
    import onnx
    from onnx import shape_inference

    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    for tensor in model.graph.input:
        if tensor.name in inits:
            continue
        for i, dim in enumerate(tensor.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                dim.dim_value = 1 if i == 0 else seq
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    # ONNX knows no com.microsoft op: give each GroupQueryAttention's output its query's shape
    # and infer again, so the MatMuls after it (o_proj) get theirs.
    # (An exporter may have named its dims symbolically: those are replaced.)
    known = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.input)}
    hints = {}
    for node in inferred.graph.node:
        query = known.get(node.input[0]) if node.op_type == "GroupQueryAttention" else None
        if query is not None:
            hint = onnx.ValueInfoProto()
            hint.CopyFrom(query)
            hint.name = node.output[0]
            hints[hint.name] = hint
    if hints:
        kept = [v for v in model.graph.value_info if v.name not in hints]
        del model.graph.value_info[:]
        model.graph.value_info.extend([*kept, *hints.values()])
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    graph = inferred.graph
    shapes = {v.name: _dims(v.type.tensor_type) for v in (*graph.value_info, *graph.input)}
    shapes.update({v.name: _dims(v.type.tensor_type) for v in graph.output})
    total, unresolved = 0.0, 0
    weights: dict[tuple[int, int], int] = {}
    for node in graph.node:
        if node.op_type == "GroupQueryAttention":
            # Scores (s x s x hidden) and their product with V: the sequence attending to itself.
            query = shapes.get(node.input[0]) or [None]  # [batch, s, heads x head_dim]
            hidden = query[-1]
            if hidden is None:
                unresolved += 1
            else:
                total += 4.0 * seq * seq * hidden
            continue
        if node.op_type not in ("MatMul", "Gemm"):
            continue
        a, b = node.input[0], node.input[1]
        out = shapes.get(node.output[0])
        if b in inits:
            k, n = inits[b][-2:]
            if node.op_type == "Gemm" and any(x.name == "transB" and x.i for x in node.attribute):
                k, n = n, k
        else:
            k = (shapes.get(a) or [None])[-1]
            n = (out or [None])[-1]
        if out is None or k is None or n is None:
            unresolved += 1
            continue
        # Unknown leading dims are the batch (1 here); the last is N.
        rows = math.prod(d or 1 for d in out[:-1])
        total += 2.0 * rows * k * n
        if b in inits and rows % seq == 0 and rows:
            weights[(k, n)] = weights.get((k, n), 0) + 1
    return total, weights, unresolved


def graph_ops(path: str | Path) -> GraphOps:
    """The MatMul operations of the graph at `path` as a function of sequence length."""
    import numpy as np
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    counts = [_count(model, s) for s in FIT_LENGTHS]
    lengths = np.array(FIT_LENGTHS, dtype=float)
    system = np.stack([np.ones_like(lengths), lengths, lengths**2], axis=1)
    c0, c1, c2 = np.linalg.solve(system, np.array([c[0] for c in counts]))
    return GraphOps(
        c0=round(float(c0), 3),
        c1=round(float(c1), 3),
        c2=round(float(c2), 3),
        weights=counts[-1][1],
        unresolved=counts[-1][2],
    )
