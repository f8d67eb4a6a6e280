"""Export a transformers causal LM (Qwen3ForCausalLM, LlamaForCausalLM) to ONNX with a KV cache.

Graph: input_ids [B, q], attention_mask [B, past + q], position_ids [B, q],
past_key_values.N.key/value [B, kv_heads, past, head_dim] -> logits [B, vocab] (one position
per row only: a full [B, q, vocab] output would be 600 MB for one 1,000-token prompt at Qwen3's
vocab), present.N.key/value. The first call passes empty (past = 0) caches.

Attention is onnxruntime's GroupQueryAttention (runtime.gqa): rows are right-padded (the mask
is ones then zeros) and `logits` are each row's last real position; the runtime binds one
preallocated buffer per layer as both past and present, so a decoding step copies no cache.
`attention="eager"` writes the earlier form (transformers' eager attention as traced, rows
left-padded, logits of the last column), which runtime.causal_lm still runs.
"""

from __future__ import annotations

from pathlib import Path

from guardcli.core.errors import require_torch

OPSET = 17


def kv_example(layers: int, kv_heads: int, head_dim: int):
    """The example a KV-cache graph is traced with (two rows of 2 new tokens over 3 cached
    positions, the second row left-padded), its past/present names and their dynamic axes."""
    import torch

    past_len = 3
    ids = torch.tensor([[9707, 1879], [9707, 1879]], dtype=torch.int64)
    mask = torch.ones((2, past_len + 2), dtype=torch.int64)
    mask[1, 0] = 0
    pos = torch.tensor([[3, 4], [2, 3]], dtype=torch.int64)
    past = [torch.randn(2, kv_heads, past_len, head_dim) for _ in range(2 * layers)]
    past_names: list[str] = []
    present_names: list[str] = []
    axes: dict[str, dict[int, str]] = {}
    for i in range(layers):
        for kind in ("key", "value"):
            past_names.append(f"past_key_values.{i}.{kind}")
            present_names.append(f"present.{i}.{kind}")
            axes[past_names[-1]] = {0: "batch", 2: "past"}
            axes[present_names[-1]] = {0: "batch", 2: "total"}
    axes.update(
        input_ids={0: "batch", 1: "sequence"},
        attention_mask={0: "batch", 1: "total"},
        position_ids={0: "batch", 1: "sequence"},
    )
    return ids, mask, pos, past, past_names, present_names, axes


def _torch():
    return require_torch("Exporting a causal LM to ONNX")


def kv_wrapper(model, *, classifier: bool = False):
    """A module with flat tensor inputs/outputs around `model`, for the TorchScript exporter.
    `classifier`: `model` is a *ForSequenceClassification (trunk `model.model`, head
    `model.score`) and `logits` are its class logits at the last position."""
    torch = _torch()
    from transformers import DynamicCache

    layers = model.config.num_hidden_layers

    class WithCache(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            cache = DynamicCache(
                ddp_cache_data=[(past[2 * i], past[2 * i + 1]) for i in range(layers)]
            )
            q = input_ids.shape[1]
            total = attention_mask.shape[1]
            # A 4-D additive mask built here (causal within the new tokens, padding from the
            # 2-D mask) keeps the export free of transformers' vmap mask machinery.
            rows = torch.arange(q, device=input_ids.device)[:, None] + (total - q)
            cols = torch.arange(total, device=input_ids.device)[None, :]
            allowed = (cols <= rows)[None, None] & attention_mask.bool()[:, None, None, :]
            additive = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
                ~allowed, torch.finfo(torch.float32).min
            )
            if classifier:
                out = self.model.model(
                    input_ids=input_ids,
                    attention_mask=additive,
                    position_ids=position_ids,
                    past_key_values=cache,
                    use_cache=True,
                )
                logits = self.model.score(out.last_hidden_state[:, -1])
            else:
                out = self.model(
                    input_ids=input_ids,
                    attention_mask=additive,
                    position_ids=position_ids,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
                logits = out.logits[:, -1]
            flat = []
            for layer in out.past_key_values.layers:
                flat += [layer.keys, layer.values]
            return (logits, *flat)

    return WithCache().eval()


def gqa_wrapper(model, *, classifier: bool = False):
    """The module traced for the GroupQueryAttention graph: the model's own layers and weights,
    each layer's attention as runtime.gqa's op (rotary embedding and any q/k RMSNorm applied
    before it, as transformers does), and the head applied at each row's last real position."""
    torch = _torch()
    import sys

    from guardcli.runtime.gqa import decoder_layers, gqa_function

    gqa = gqa_function(torch)
    trunk = model.model
    head = model.score if classifier else model.lm_head
    attn0 = trunk.layers[0].self_attn
    rotate = sys.modules[type(attn0).__module__].apply_rotary_pos_emb
    scale = getattr(attn0, "scaling", None)

    class WithGqa(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, *past):
            b, s = input_ids.shape
            h = trunk.embed_tokens(input_ids)
            cos, sin = trunk.rotary_emb(h, position_ids)
            lengths = attention_mask.sum(dim=1)
            seqlens_k = (lengths - 1).to(torch.int32)
            width = torch._shape_as_tensor(attention_mask)[1]
            total = width.to(torch.int32)
            h, present = decoder_layers(
                trunk, h, cos, sin, past, seqlens_k, total, gqa=gqa, rotate=rotate, scale=scale
            )
            # Each row's last real new token: its length less the positions before this call
            # (a decoding step, where rows differ in length, reads its one new position).
            last = (lengths - width + s - 1).clamp(min=0)
            picked = h.gather(1, last[:, None, None].expand(b, 1, h.shape[-1]))[:, 0]
            return (head(trunk.norm(picked)), *present)

    return WithGqa().eval()


def export_causal_lm(
    model, path: Path, *, classifier: bool = False, attention: str = "gqa"
) -> None:
    """Write `model` (a transformers causal LM, eval mode, eager attention) to `path`; with
    `classifier`, a decoder *ForSequenceClassification whose logits are its class logits at
    the last position (a classifier whose prompts share a head can then start from its KV).
    `attention`: "gqa" (GroupQueryAttention, right-padded rows) or "eager" (the earlier
    form)."""
    _torch()  # fail plainly when the export extra is missing
    from guardcli.runtime.onnx_recipes import export_torchscript

    config = model.config
    layers, kv_heads = config.num_hidden_layers, config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    ids, mask, pos, past, past_names, present_names, axes = kv_example(layers, kv_heads, head_dim)
    ids = ids % config.vocab_size  # a small stand-in vocabulary (synthetic Llama Guard)
    axes["logits"] = {0: "batch"}
    extra = {}
    if attention == "gqa":
        wrapper = gqa_wrapper(model, classifier=classifier)
        ids[1], mask[1], pos[1] = ids[0], 1, pos[0]  # no left padding (GroupQueryAttention)
        extra["custom_opsets"] = {"com.microsoft": 1}
    elif attention == "eager":
        wrapper = kv_wrapper(model, classifier=classifier)
    else:
        raise ValueError(f"attention must be 'gqa' or 'eager', not {attention!r}")
    export_torchscript(
        wrapper,
        (ids, mask, pos, *past),
        path,
        input_names=["input_ids", "attention_mask", "position_ids", *past_names],
        output_names=["logits", *present_names],
        dynamic_axes=axes,
        opset_version=OPSET,
        **extra,
    )
    if attention == "gqa":
        _name_logit_columns(path, (model.score if classifier else model.lm_head).out_features)


def _name_logit_columns(path: Path, columns: int) -> None:
    """Write the logits' column count into the graph's output (the exporter cannot infer shapes
    through GroupQueryAttention): score mode's restricted head (runtime.score_head) reads it."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_value = columns
    onnx.save(model, str(path))  # the weights stay in their external file beside it


def load_and_export(src: Path, graph: Path, *, what: str, log=lambda _: None):
    """Load the transformers checkpoint at `src` (FP32, eager attention) and export it to
    `graph` with its KV cache; returns the module, for checks against it. `what` names the
    family in the log line."""
    torch = _torch()
    from transformers import AutoModelForCausalLM

    from guardcli.core.errors import GuardError

    log(f"reading {src} ({what}, FP32, eager attention)")
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(src), dtype=torch.float32, attn_implementation="eager"
        ).eval()
    except Exception as exc:
        raise GuardError(f"transformers could not load {src}: {exc}") from exc
    log(f"exporting with KV cache to {graph}")
    export_causal_lm(model, graph)
    return model


def export_folder(model_dir: Path, out: Path | None = None) -> Path:
    """Export a checkpoint folder (e.g. a fetched Qwen3Guard-Gen) to `onnx/model.onnx` beside
    it, in FP32 with eager attention, so `--variant fp32` (or auto) runs it with onnxruntime."""
    model_dir = Path(model_dir)
    out = out or model_dir / "onnx" / "model.onnx"
    load_and_export(model_dir, out, what="causal LM")
    return out
