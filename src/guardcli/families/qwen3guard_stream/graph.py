"""The forward pass the ONNX graph is traced from: the reference module's own weights and
arithmetic, with each layer's attention as onnxruntime's GroupQueryAttention (com.microsoft).

Why not the eager attention as traced: its graph concatenates the past with the new keys and
values (a copy of the whole cache per layer and call, ~0.9 GB per step at 4,096 tokens of 0.6B
context) and runs attention as a chain of small ops. GroupQueryAttention (runtime.gqa, shared
with the causal LM graphs) reads the cache as it is, groups the query heads that share a KV head
without copying, and, when its past and present are bound to one buffer (runners.OnnxRunner),
writes only the new positions into it: nothing is copied per call.

Contract (unchanged names): input_ids [B, q], attention_mask [B, total] (rows right-padded:
ones then zeros), position_ids [B, q], past_key_values.N.key/value [B, kv_heads, past or
capacity, head_dim] -> the four logits [B, q, classes], present.N.key/value. Rotary embedding
and q/k RMSNorm are applied before the op (do_rotary=0), exactly as the reference does.
"""

from __future__ import annotations

from typing import Any

from guardcli.runtime.gqa import decoder_layers, gqa_function


def graph_module(module):
    """The module traced by export.export_module: (input_ids, attention_mask, position_ids,
    *past) -> (four logits, *present)."""
    import torch
    from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

    gqa = gqa_function(torch)

    class StreamGraph(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.guard = module

        def forward(self, input_ids, attention_mask, position_ids, *past: Any):
            trunk = self.guard.model
            h = trunk.embed_tokens(input_ids)
            cos, sin = trunk.rotary_emb(h, position_ids)
            seqlens_k = (attention_mask.sum(dim=1) - 1).to(torch.int32)
            total = torch._shape_as_tensor(attention_mask)[1].to(torch.int32)
            h, present = decoder_layers(
                trunk, h, cos, sin, past, seqlens_k, total, gqa=gqa, rotate=apply_rotary_pos_emb
            )
            return (*self.guard.heads(trunk.norm(h)), *present)

    return StreamGraph().eval()
