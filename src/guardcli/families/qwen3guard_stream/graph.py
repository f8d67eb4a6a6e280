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

from guardcli.runtime.gqa import gqa_function


def graph_module(module):
    """The module traced by export.export_module: (input_ids, attention_mask, position_ids,
    *past) -> (four logits, *present)."""
    import torch
    from transformers.models.qwen3.modeling_qwen3 import apply_rotary_pos_emb

    gqa = gqa_function(torch)
    config = module.config
    heads, kv_heads, d = (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.head_dim,
    )

    class StreamGraph(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.guard = module

        def forward(self, input_ids, attention_mask, position_ids, *past: Any):
            trunk = self.guard.model
            b, s = input_ids.shape
            h = trunk.embed_tokens(input_ids)
            cos, sin = trunk.rotary_emb(h, position_ids)
            seqlens_k = (attention_mask.sum(dim=1) - 1).to(torch.int32)
            total = torch._shape_as_tensor(attention_mask)[1].to(torch.int32)
            present = []
            for i, layer in enumerate(trunk.layers):
                attn = layer.self_attn
                x = layer.input_layernorm(h)
                q = attn.q_norm(attn.q_proj(x).view(b, s, heads, d))
                k = attn.k_norm(attn.k_proj(x).view(b, s, kv_heads, d))
                q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)
                out, keys, values = gqa.apply(
                    q.reshape(b, s, heads * d),
                    k.reshape(b, s, kv_heads * d),
                    attn.v_proj(x),
                    past[2 * i],
                    past[2 * i + 1],
                    seqlens_k,
                    total,
                    heads,
                    kv_heads,
                )
                present += [keys, values]
                h = h + attn.o_proj(out)
                h = h + layer.mlp(layer.post_attention_layernorm(h))
            return (*self.guard.heads(trunk.norm(h)), *present)

    return StreamGraph().eval()
