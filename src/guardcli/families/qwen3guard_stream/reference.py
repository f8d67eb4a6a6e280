"""The PyTorch reference of Qwen3ForGuardModel, written from the spec (§4): the Qwen3 trunk
(transformers' Qwen3Model, unchanged) and two head stacks read at every position,

    x = RMSNorm(pre(h)); risk = risk_head(x); category = category_head(x)

one for responses (`risk_level_category_pre`, ...) and one for queries (`query_` prefix). It is
the test oracle for the KV-cached engine and the ONNX export, and the torch runtime itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError, require_torch
from guardcli.families.qwen3guard_stream.labels import label_maps

WEIGHTS = "model.safetensors"


def _torch():
    return require_torch("Qwen3Guard-Stream's PyTorch reference")


@dataclass
class GuardLogits:
    """The four logit tensors [batch, positions, classes] and the cache (spec §1)."""

    risk_level_logits: Any
    category_logits: Any
    query_risk_level_logits: Any
    query_category_logits: Any
    past_key_values: Any = None


def trunk_config(config: dict[str, Any]):
    """A transformers Qwen3Config from a Qwen3Guard-Stream config.json dict (eager attention:
    the same arithmetic as the exported graph)."""
    from transformers import Qwen3Config

    keys = {k: v for k, v in config.items() if not k.startswith("_")}
    trunk = Qwen3Config(**keys)
    trunk._attn_implementation = "eager"
    return trunk


def build_module(config: dict[str, Any]):
    """An untrained Qwen3ForGuardModel with the checkpoint's parameter names."""
    torch = _torch()
    from transformers import Qwen3Model
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    trunk = trunk_config(config)
    hidden, inner, eps = trunk.hidden_size, int(config["guard_inner_size"]), trunk.rms_norm_eps
    linear = torch.nn.Linear

    class Qwen3ForGuardModel(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.config = trunk
            self.model = Qwen3Model(trunk)
            self.risk_level_category_pre = linear(hidden, inner, bias=False)
            self.risk_level_category_layernorm = Qwen3RMSNorm(inner, eps=eps)
            self.risk_level_head = linear(inner, int(config["num_risk_level"]), bias=False)
            self.category_head = linear(inner, int(config["num_category"]), bias=False)
            self.query_risk_level_category_pre = linear(hidden, inner, bias=False)
            self.query_risk_level_category_layernorm = Qwen3RMSNorm(inner, eps=eps)
            self.query_risk_level_head = linear(
                inner, int(config["num_query_risk_level"]), bias=False
            )
            self.query_category_head = linear(inner, int(config["num_query_category"]), bias=False)

        def heads(self, h) -> tuple[Any, Any, Any, Any]:
            x = self.risk_level_category_layernorm(self.risk_level_category_pre(h))
            q = self.query_risk_level_category_layernorm(self.query_risk_level_category_pre(h))
            return (
                self.risk_level_head(x),
                self.category_head(x),
                self.query_risk_level_head(q),
                self.query_category_head(q),
            )

        def forward(
            self,
            input_ids,
            attention_mask=None,
            position_ids=None,
            past_key_values=None,
            use_cache: bool = False,
        ) -> GuardLogits:
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=use_cache,
            )
            return GuardLogits(*self.heads(out.last_hidden_state), out.past_key_values)

    return Qwen3ForGuardModel().eval()


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise GuardError(f"Cannot read {path}: {exc}") from exc
    archs = config.get("architectures") or []
    if "Qwen3ForGuardModel" not in archs:
        raise GuardError(
            f"{model_dir} is not a Qwen3Guard-Stream model (architectures: {archs}).",
            hint="Build one with `guard synth qwen3guard-stream --out DIR`.",
        )
    try:
        label_maps(config)
    except ValueError as exc:
        raise GuardError(f"{path}: {exc}.") from None
    return config


def weight_files(model_dir: Path) -> list[Path]:
    """model.safetensors, else the shards model-*.safetensors (the 4B and 8B checkpoints)."""
    model_dir = Path(model_dir)
    if (model_dir / WEIGHTS).is_file():
        return [model_dir / WEIGHTS]
    return sorted(model_dir.glob("model-*.safetensors"))


def load_reference(model_dir: Path, *, dtype: str = "float32"):
    """The reference module with the folder's safetensors weights, one file or shards (FP32 by
    default; a BF16 checkpoint is upcast). An `lm_head.weight` is ignored: the heads do not
    read it."""
    torch = _torch()
    from safetensors.torch import load_file

    config = read_config(model_dir)
    files = weight_files(model_dir)
    if not files:
        raise GuardError(
            f"{model_dir} has no {WEIGHTS} (or model-*.safetensors shards).",
            hint="Pass the checkpoint folder as downloaded (config.json, model.safetensors, "
            "tokenizer.json).",
        )
    module = build_module(config)
    state = {}
    for path in files:
        state.update(load_file(str(path)))
    state = {k: v for k, v in state.items() if not k.startswith("lm_head.")}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise GuardError(
            f"The weights in {model_dir} do not match Qwen3ForGuardModel: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}."
        )
    return module.to(getattr(torch, dtype)).eval()
