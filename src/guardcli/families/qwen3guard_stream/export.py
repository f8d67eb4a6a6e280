"""ONNX export of Qwen3Guard-Stream with a KV cache, and its INT8 variant.

Graph: input_ids [B, q], attention_mask [B, past + q], position_ids [B, q],
past_key_values.N.key/value [B, kv_heads, past, head_dim] -> risk_level_logits [B, q, 3],
category_logits [B, q, 8], query_risk_level_logits [B, q, 3], query_category_logits [B, q, 9]
(every new position: the heads are pointwise and small, unlike a vocabulary projection), then
present.N.key/value. The first call passes empty (past = 0) caches.
"""

from __future__ import annotations

from contextlib import contextmanager
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
INT8_GRAPH = "onnx/model_quantized.onnx"


def kv_wrapper(module):
    """Flat tensor inputs/outputs around the reference module, for the TorchScript exporter."""
    torch = require_torch("Exporting Qwen3Guard-Stream to ONNX")
    from transformers import DynamicCache

    layers = module.config.num_hidden_layers

    class WithCache(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.guard = module

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(
                ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)]
            )
            additive = causal_additive_mask(torch, attention_mask, input_ids.shape[1])
            out = self.guard(
                input_ids=input_ids,
                attention_mask=additive,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            flat = []
            for layer in out.past_key_values.layers:
                flat += [layer.keys, layer.values]
            return (
                out.risk_level_logits,
                out.category_logits,
                out.query_risk_level_logits,
                out.query_category_logits,
                *flat,
            )

    return WithCache().eval()


def causal_additive_mask(torch, attention_mask, q: int):
    """[B, 1, q, total] additive mask: causal within the q new tokens, padding from the 2-D
    mask. Built here so the graph is free of transformers' vmap mask machinery."""
    total = attention_mask.shape[1]
    rows = torch.arange(q)[:, None] + (total - q)
    cols = torch.arange(total)[None, :]
    allowed = (cols <= rows)[None, None] & attention_mask.bool()[:, None, None, :]
    return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
        ~allowed, torch.finfo(torch.float32).min
    )


def grouped_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **_):
    """Eager attention without repeat_kv: the query heads that share a KV head are stacked
    along the query axis, so the cache is read as it is instead of copied once per group (at
    4,096 tokens of 0.6B context that copy is ~0.9 GB per step). Same arithmetic, same
    results (the export is checked against the reference)."""
    import torch

    b, h, q, d = query.shape
    kv = key.shape[1]
    g = h // kv
    weights = torch.matmul(query.reshape(b, kv, g * q, d), key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        total = weights.shape[-1]
        weights = weights.reshape(b, kv, g, q, total) + attention_mask[:, :, None]
        weights = weights.reshape(b, kv, g * q, total)
    weights = torch.nn.functional.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value).reshape(b, h, q, d)
    return out.transpose(1, 2).contiguous(), weights


@contextmanager
def _grouped_attention():
    """Qwen3's eager attention replaced by grouped_attention while the graph is traced."""
    from transformers.models.qwen3 import modeling_qwen3

    original = modeling_qwen3.eager_attention_forward
    modeling_qwen3.eager_attention_forward = grouped_attention
    try:
        yield
    finally:
        modeling_qwen3.eager_attention_forward = original


def export_module(module, path: Path) -> None:
    """Write the reference module (FP32, eager attention) to `path`."""
    require_torch("Exporting Qwen3Guard-Stream to ONNX")
    from guardcli.runtime.onnx_recipes import export_torchscript

    config = module.config
    layers, kv_heads, head_dim = (
        config.num_hidden_layers,
        config.num_key_value_heads,
        config.head_dim,
    )
    ids, mask, pos, past, past_names, present_names, axes = kv_example(layers, kv_heads, head_dim)
    axes.update({name: {0: "batch", 1: "sequence"} for name in LOGIT_OUTPUTS})
    with _grouped_attention():
        export_torchscript(
            kv_wrapper(module),
            (ids, mask, pos, *past),
            path,
            input_names=["input_ids", "attention_mask", "position_ids", *past_names],
            output_names=[*LOGIT_OUTPUTS, *present_names],
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def export_folder(model_dir: Path, out: Path | None = None) -> Path:
    """Export a checkpoint folder to `onnx/model.onnx` beside it, in FP32."""
    from guardcli.families.qwen3guard_stream.reference import load_reference

    model_dir = Path(model_dir)
    out = out or model_dir / FP32_GRAPH
    export_module(load_reference(model_dir), out)
    return out


def quantize_folder(model_dir: Path) -> Path:
    """`onnx/model_quantized.onnx` from the FP32 graph by the existing recipe: INT8 weights per
    channel, activations per row (per token, so a token's verdict depends neither on its batch
    nor on its chunk), the MLP down_proj kept in FP32."""
    from guardcli.runtime.onnx_recipes import to_int8_dynamic

    model_dir = Path(model_dir)
    dst = model_dir / INT8_GRAPH
    to_int8_dynamic(model_dir / FP32_GRAPH, dst)
    return dst
