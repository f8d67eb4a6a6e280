"""The forward pass the ONNX graph is traced from: the reference module's own weights and
arithmetic, with each layer's attention as onnxruntime's GroupQueryAttention (com.microsoft).

Why not the eager attention as traced: its graph concatenates the past with the new keys and
values (a copy of the whole cache per layer and call, ~0.9 GB per step at 4,096 tokens of 0.6B
context) and runs attention as a chain of small ops. GroupQueryAttention reads the cache as it
is, groups the query heads that share a KV head without copying, and, when its past and present
are bound to one buffer (runners.OnnxRunner), writes only the new positions into it: nothing is
copied per call.

Contract (unchanged names): input_ids [B, q], attention_mask [B, total] (rows right-padded:
ones then zeros), position_ids [B, q], past_key_values.N.key/value [B, kv_heads, past or
capacity, head_dim] -> the four logits [B, q, classes], present.N.key/value. Rotary embedding
and q/k RMSNorm are applied before the op (do_rotary=0), exactly as the reference does.
"""

from __future__ import annotations

from typing import Any


def gqa_function(torch):
    """An autograd Function whose forward is the attention in torch (for tracing, and the same
    result) and whose ONNX symbolic is one GroupQueryAttention node."""

    class GroupQueryAttention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, past_k, past_v, seqlens_k, total, heads: int, kv_heads: int):
            b, s, _ = q.shape
            d = past_k.shape[-1]
            new_k = k.reshape(b, s, kv_heads, d).transpose(1, 2)
            new_v = v.reshape(b, s, kv_heads, d).transpose(1, 2)
            keys = torch.cat([past_k, new_k], dim=2)
            values = torch.cat([past_v, new_v], dim=2)
            g = heads // kv_heads
            query = q.reshape(b, s, kv_heads, g, d).permute(0, 2, 3, 1, 4)
            query = query.reshape(b, kv_heads, g * s, d)
            scores = torch.matmul(query, keys.transpose(2, 3)) * d**-0.5
            n = keys.shape[2]
            valid = (seqlens_k + 1).long()  # per row: real tokens, past included
            rows = past_k.shape[2] + torch.arange(s)  # absolute position of each query
            cols = torch.arange(n)[None, None, :]
            allowed = (cols <= rows[None, :, None]) & (cols < valid[:, None, None])  # [b, s, n]
            allowed = allowed[:, None, None].expand(b, 1, g, s, n).reshape(b, 1, g * s, n)
            scores = scores.masked_fill(~allowed, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            out = torch.matmul(probs, values).reshape(b, kv_heads, g, s, d)
            out = out.permute(0, 3, 1, 2, 4).reshape(b, s, heads * d)
            return out, keys, values

        @staticmethod
        def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total, heads, kv_heads):
            outs = g.op(
                "com.microsoft::GroupQueryAttention",
                q,
                k,
                v,
                past_k,
                past_v,
                seqlens_k,
                total,
                num_heads_i=heads,
                kv_num_heads_i=kv_heads,
                outputs=3,
            )
            # Typed here (dims left symbolic): the exporter has no shape inference for the op.
            for out, like in zip(outs, (q, past_k, past_v), strict=True):
                out.setType(like.type().with_sizes([None] * 3 if like is q else [None] * 4))
            return outs

    return GroupQueryAttention


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
