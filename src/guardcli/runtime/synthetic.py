"""What every family's synthetic builder shares: Qwen3 sizes and config, the seqcls ONNX export.

Random-weight models of each family's real architecture, tiny (tests) or full size (benchmarks),

They are built locally with transformers and exported the way the real artifacts were, so every
command can be exercised end to end without the hub. Their verdicts mean nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.errors import require_torch


@dataclass(frozen=True)
class EncoderDims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    head_hidden: int


# Qwen3-Embedding-0.6B dimensions + the card's MLP head 1024 -> 256 -> 2.
CSAM_GUARD_DIMS = {
    "full": EncoderDims(1024, 28, 16, 8, 128, 3072, 256),
    "tiny": EncoderDims(64, 2, 4, 2, 16, 128, 32),
}
QWEN3_VOCAB = 151_669


def _torch():
    return require_torch("Building synthetic models")


def qwen3_config(dims: EncoderDims, **extra: Any):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=QWEN3_VOCAB,
        hidden_size=dims.hidden,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        num_key_value_heads=dims.kv_heads,
        head_dim=dims.head_dim,
        intermediate_size=dims.intermediate,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151643,
        pad_token_id=151643,
        **extra,
    )


def export_seqcls_onnx(module, path: Path, *, max_length: int, example=None) -> None:
    """TorchScript ONNX export of input_ids, attention_mask [batch, sequence] -> logits, with
    dynamic batch and sequence axes and one external-data file. `example`: (ids, mask) to
    trace with (default: two short Qwen-vocabulary rows, one padded)."""
    torch = _torch()
    from guardcli.runtime.onnx_recipes import export_torchscript

    if example is None:
        ids = torch.tensor([[9707, 1879, 151643], [9707, 151643, 151643]], dtype=torch.int64)
        mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.int64)
        example = (ids, mask)
    export_torchscript(
        module,
        example,
        path,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
        },
        opset_version=17,
    )


def answer_loss(torch, model, head: list[int], batch, pad_id: int):
    """Training a synthetic generative guard: cross-entropy on the answer tokens only. The shared
    head runs once; the tails (`batch`: (tail ids, answer ids) pairs) run as a batch right-padded
    with `pad_id` on its cache; logits only where they are needed (a full-vocabulary projection
    of every position would dominate the step)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    model.model(input_ids=torch.tensor([head]), past_key_values=cache, use_cache=True)
    layers: list[Any] = list(cache.layers)
    for layer in layers:
        layer.keys = layer.keys.expand(len(batch), -1, -1, -1)
        layer.values = layer.values.expand(len(batch), -1, -1, -1)
    width = max(len(t) + len(a) for t, a in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), len(head) + width), dtype=torch.long)
    mask[:, : len(head)] = 1
    rows, cols, labels = [], [], []
    for r, (tail, target) in enumerate(batch):
        seq = tail + target
        ids[r, : len(seq)] = torch.tensor(seq)
        mask[r, len(head) : len(head) + len(seq)] = 1
        for k, label in enumerate(target):
            rows.append(r)
            cols.append(len(tail) - 1 + k)
            labels.append(label)
    pos = torch.arange(len(head), len(head) + width)[None].expand(len(batch), -1)
    hidden = model.model(
        input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True
    ).last_hidden_state
    logits = model.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)])
    return torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
