"""ONNX export of Qwen3Guard-Stream with a KV cache, and its INT8 variant.

Graph: input_ids [B, q], attention_mask [B, past + q], position_ids [B, q],
past_key_values.N.key/value [B, kv_heads, past, head_dim] -> risk_level_logits [B, q, 3],
category_logits [B, q, 8], query_risk_level_logits [B, q, 3], query_category_logits [B, q, 9]
(every new position: the heads are pointwise and small, unlike a vocabulary projection), then
present.N.key/value. The first call passes empty (past = 0) caches; attention is onnxruntime's
GroupQueryAttention (graph.py), so rows of a batch are right-padded, and a runner may bind one
preallocated buffer as both past and present (nothing copied per call).
"""

from __future__ import annotations

from pathlib import Path

from guardcli.core.errors import require_torch
from guardcli.runtime.causal_onnx import kv_example

OPSET = 17
LOGIT_OUTPUTS = (
    "risk_level_logits",
    "category_logits",
    "query_risk_level_logits",
    "query_category_logits",
)
FP32_GRAPH = "onnx/model.onnx"
FP16_GRAPH = "onnx/model_fp16.onnx"
INT8_GRAPH = "onnx/model_quantized.onnx"
INT8_KEEP_FLOAT: tuple[str, ...] = ()  # every MatMul INT8 (the card's recipe keeps down_proj)
# Tried and not taken: every MatMul as MatMulNBits (8-bit weights in blocks of 32, int8
# activations per row inside the kernel, accuracy_level 4). It is batch- and chunk-invariant
# and needs ~8x fewer nodes, but on the 0.6B at chunk 8 its MatMuls took 72.6 ms a step
# against MatMulIntegerToFloat's 30.2 ms (onnxruntime 1.32, a 2-core AMX VM).


def export_module(module, path: Path) -> None:
    """Write the reference module (FP32; attention as GroupQueryAttention, graph.py) to
    `path`."""
    require_torch("Exporting Qwen3Guard-Stream to ONNX")
    from guardcli.families.qwen3guard_stream.graph import graph_module
    from guardcli.runtime.onnx_recipes import export_torchscript

    config = module.config
    layers, kv_heads, head_dim = (
        config.num_hidden_layers,
        config.num_key_value_heads,
        config.head_dim,
    )
    ids, mask, pos, past, past_names, present_names, axes = kv_example(layers, kv_heads, head_dim)
    axes.update({name: {0: "batch", 1: "sequence"} for name in LOGIT_OUTPUTS})
    ids[1], mask[1], pos[1] = ids[0], 1, pos[0]  # no left padding (GroupQueryAttention)
    export_torchscript(
        graph_module(module),
        (ids, mask, pos, *past),
        path,
        input_names=["input_ids", "attention_mask", "position_ids", *past_names],
        output_names=[*LOGIT_OUTPUTS, *present_names],
        dynamic_axes=axes,
        opset_version=OPSET,
        custom_opsets={"com.microsoft": 1},
    )


def export_folder(model_dir: Path, out: Path | None = None) -> Path:
    """Export a checkpoint folder to `onnx/model.onnx` beside it, in FP32."""
    from guardcli.families.qwen3guard_stream.reference import load_reference

    model_dir = Path(model_dir)
    out = out or model_dir / FP32_GRAPH
    export_module(load_reference(model_dir), out)
    return out


def quantize_folder(model_dir: Path) -> Path:
    """`onnx/model_quantized.onnx` from the FP32 graph by the existing per-row recipe, on every
    MatMul with weights (the MLP's down_proj and the heads too: a stream runs a few tokens per
    call, so weight reads, not arithmetic, set its cost): INT8 weights per channel, activations
    per row (per token, so a token's verdict depends neither on its batch nor on its chunk)."""
    from guardcli.runtime.onnx_recipes import to_int8_dynamic

    model_dir = Path(model_dir)
    dst = model_dir / INT8_GRAPH
    to_int8_dynamic(model_dir / FP32_GRAPH, dst, keep_float=INT8_KEEP_FLOAT)
    return dst


def to_fp16(src: Path, dst: Path) -> None:
    """The FP16 graph by the existing recipe (norms FP32), with its KV cache inputs and outputs
    in FP16 too: GroupQueryAttention then reads and writes the runner's one buffer per layer in
    place (runners.OnnxRunner), where FP32 cache I/O would cast the whole cache every call.
    Only the four logit outputs stay FP32."""
    from guardcli.runtime.onnx_recipes import to_fp16 as cast

    cast(Path(src), Path(dst), keep_io_types=list(LOGIT_OUTPUTS))


def fp16_folder(model_dir: Path) -> Path:
    """`onnx/model_fp16.onnx` from the FP32 graph (to_fp16)."""
    model_dir = Path(model_dir)
    dst = model_dir / FP16_GRAPH
    to_fp16(model_dir / FP32_GRAPH, dst)
    return dst
