"""Attention as onnxruntime's GroupQueryAttention (com.microsoft), for graphs with a KV cache.

Why not the eager attention as traced: its graph repeats the KV heads for the query heads
(Expand: a copy of the cache per layer and step), concatenates the past with the new keys and
values (another copy) and runs attention as a chain of small ops. GroupQueryAttention reads the
cache as it is, groups the query heads that share a KV head without copying, and, when its past
and present are bound to one preallocated buffer, writes only the new positions into it.

The op's contract: rows are right-padded; `seqlens_k` [B] int32 is each row's real length less
one (past included), `total` the longest; a row's new tokens are the last ones of its length.
"""

from __future__ import annotations

import mmap
from pathlib import Path

OP_NAME = b"GroupQueryAttention"


def gqa_function(torch):
    """An autograd Function whose forward is the attention in torch (for tracing, and the same
    result) and whose ONNX symbolic is one GroupQueryAttention node. `scale` None is the op's
    default, head_dim ** -0.5."""

    class GroupQueryAttention(torch.autograd.Function):
        @staticmethod
        def forward(
            ctx, q, k, v, past_k, past_v, seqlens_k, total, heads: int, kv_heads: int, scale=None
        ):
            b, s, _ = q.shape
            d = past_k.shape[-1]
            new_k = k.reshape(b, s, kv_heads, d).transpose(1, 2)
            new_v = v.reshape(b, s, kv_heads, d).transpose(1, 2)
            keys = torch.cat([past_k, new_k], dim=2)
            values = torch.cat([past_v, new_v], dim=2)
            g = heads // kv_heads
            query = q.reshape(b, s, kv_heads, g, d).permute(0, 2, 3, 1, 4)
            query = query.reshape(b, kv_heads, g * s, d)
            scores = torch.matmul(query, keys.transpose(2, 3)) * (
                d**-0.5 if scale is None else scale
            )
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
        def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total, heads, kv_heads, scale=None):
            attrs = {"num_heads_i": heads, "kv_num_heads_i": kv_heads}
            if scale is not None:
                attrs["scale_f"] = float(scale)
            outs = g.op(
                "com.microsoft::GroupQueryAttention",
                q,
                k,
                v,
                past_k,
                past_v,
                seqlens_k,
                total,
                outputs=3,
                **attrs,
            )
            # Typed here (dims left symbolic): the exporter has no shape inference for the op.
            for out, like in zip(outs, (q, past_k, past_v), strict=True):
                out.setType(like.type().with_sizes([None] * 3 if like is q else [None] * 4))
            return outs

    return GroupQueryAttention


def uses_gqa(path: Path) -> bool:
    """Whether the graph's attention is GroupQueryAttention (so a preallocated cache can be
    updated in place): a scan of the graph file's bytes (weights kept outside it)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(OP_NAME) >= 0
    except (OSError, ValueError):
        return False


def decoder_layers(trunk, h, cos, sin, past, seqlens_k, total, *, gqa, rotate, scale=None):
    """A Qwen3 or Llama trunk's layers on hidden states `h` ([B, s, hidden]), each layer's
    attention as the GroupQueryAttention op `gqa` (gqa_function) on its `past` keys and values,
    rotary embedding (`rotate`: the model's apply_rotary_pos_emb) and any q/k RMSNorm applied
    before it, as transformers does; `scale` None is the op's default 1/sqrt(head_dim).
    Returns (hidden states after the last layer, the layers' present keys and values)."""
    config = trunk.config
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    d = getattr(config, "head_dim", None) or config.hidden_size // heads
    b, s = h.shape[0], h.shape[1]
    present = []
    for i, layer in enumerate(trunk.layers):
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        q = attn.q_proj(x).view(b, s, heads, d)
        k = attn.k_proj(x).view(b, s, kv_heads, d)
        if hasattr(attn, "q_norm"):  # Qwen3; Llama has none
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = rotate(q, k, cos, sin, unsqueeze_dim=2)
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
            scale,
        )
        present += [keys, values]
        h = h + attn.o_proj(out)
        h = h + layer.mlp(layer.post_attention_layernorm(h))
    return h, present
