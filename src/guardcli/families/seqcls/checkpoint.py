"""Reading a classifier checkpoint into one torch module for `guard export`: a transformers
*ForSequenceClassification checkpoint, or the card's PyTorch layout (encoder/, head.pt,
model_config.json). See export.py for what is written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.errors import input_error, require_torch
from guardcli.runtime.export_common import additive_causal_mask

MODEL_CONFIG = "model_config.json"
HEAD_FILE = "head.pt"
ENCODER_DIR = "encoder"
ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
DEFAULT_TOLERANCE = 1e-4
# --family values for classifiers (the causal ones are export_causal.CAUSAL_FAMILIES).
EXPORT_FAMILIES = ("seqcls",)
DEFAULT_MAX_LENGTH = 384
MAX_SANE_LENGTH = 32_768


@dataclass
class Source:
    """A checkpoint read into one torch module: (input_ids, attention_mask) -> logits."""

    kind: str  # "seqcls" | "card"
    module: Any  # what is exported
    reference: Any  # callable(ids, mask) -> logits, the way the source's own code computes them
    config: dict[str, Any]
    tokenizer_dirs: list[Path]
    max_length: int
    id2label: dict[str, str]


def _torch():
    return require_torch("Exporting a checkpoint")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise input_error(f"Cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise input_error(f"{path} must hold a JSON object.")
    return data


def source_kind(src: Path) -> str:
    if (src / MODEL_CONFIG).exists() or (src / HEAD_FILE).exists():
        return "card"
    config = src / "config.json"
    if config.exists():
        archs = _read_json(config).get("architectures") or []
        if any(str(a).endswith("ForSequenceClassification") for a in archs):
            return "seqcls"
    raise input_error(
        f"{src} is neither a sequence-classification checkpoint nor the card's layout.",
        "Pass a folder with config.json whose architectures name a *ForSequenceClassification "
        f"or Qwen3ForCausalLM model, or one with {ENCODER_DIR}/, {HEAD_FILE} and {MODEL_CONFIG}.",
    )


def load_seqcls(src: Path) -> Source:
    """A transformers *ForSequenceClassification checkpoint, in FP32."""
    torch = _torch()
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(src), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    config = model.config
    pad_id = config.get_text_config().pad_token_id
    base = getattr(model, model.base_model_prefix)

    class SeqClsExport(torch.nn.Module):  # type: ignore[name-defined]
        """transformers' forward with a 4-D mask; pooling at the rightmost non-pad token."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            # Positions count real tokens only, so a left-padded row scores as it does alone.
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            hidden = base(
                input_ids=input_ids,
                attention_mask=additive_causal_mask(torch, attention_mask),
                position_ids=position_ids,
                use_cache=False,
            ).last_hidden_state
            logits = self.model.score(hidden)
            real = attention_mask.to(torch.int64)
            if pad_id is not None:
                # transformers pools at the rightmost token that is not the pad id; the mask
                # keeps that right when a runtime pads with another id.
                real = real * (input_ids != pad_id).to(torch.int64)
            positions = torch.arange(input_ids.shape[1], dtype=torch.int64)
            last = (positions[None, :] * real).argmax(-1)
            return logits[torch.arange(input_ids.shape[0]), last]

    def reference(ids, mask):
        return model(input_ids=ids, attention_mask=mask).logits

    labels = {str(k): str(v) for k, v in (config.id2label or {}).items()}
    max_length = _tokenizer_max_length(src) or DEFAULT_MAX_LENGTH
    return Source(
        "seqcls",
        SeqClsExport().eval(),
        reference,
        config.to_dict(),
        [src],
        max_length,
        labels,
    )


def _build_head(torch: Any, state: dict[str, Any], cfg: dict[str, Any], path: Path):
    """nn.Sequential(Linear, act, Linear, ...) from head.pt, layers in state_dict order."""
    prefixes: list[str] = []
    for key, value in state.items():
        if key.endswith(".weight") and getattr(value, "ndim", 0) == 2:
            prefixes.append(key[: -len(".weight")])
        elif key == "weight" and getattr(value, "ndim", 0) == 2:
            prefixes.append("")
    if not prefixes:
        raise input_error(f"{path} holds no Linear weights.", "Save the head's state_dict().")
    activation = str(cfg.get("activation", "gelu")).lower()
    if activation not in ACTIVATIONS:
        raise input_error(
            f"{MODEL_CONFIG}: unknown activation {activation!r}.",
            f"Choose one of: {', '.join(ACTIVATIONS)}.",
        )
    act = {
        "gelu": torch.nn.GELU,
        "relu": torch.nn.ReLU,
        "silu": torch.nn.SiLU,
        "tanh": torch.nn.Tanh,
    }[activation]
    layers: list[Any] = []
    for i, prefix in enumerate(prefixes):
        dot = f"{prefix}." if prefix else ""
        weight = state[f"{dot}weight"].float()
        bias = state.get(f"{dot}bias")
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if bias is not None:
                linear.bias.copy_(bias.float())
        if i:
            layers.append(act())
        layers.append(linear)
    head = torch.nn.Sequential(*layers).eval()
    dims = {
        "hidden": layers[0].in_features,
        "num_labels": layers[-1].out_features,
    }
    if len(prefixes) > 1:
        dims["head_hidden"] = layers[0].out_features
    for name, value in dims.items():
        if name in cfg and int(cfg[name]) != value:
            raise input_error(
                f"{MODEL_CONFIG} says {name} {cfg[name]}, but {path.name} has {value}.",
                f"Fix {MODEL_CONFIG} or the head file.",
            )
    return head


def load_card(src: Path) -> Source:
    """The card's layout: encoder/ + head.pt + model_config.json, pooled at the last real token."""
    torch = _torch()
    from transformers import AutoModel

    for need in (ENCODER_DIR, HEAD_FILE, MODEL_CONFIG):
        if not (src / need).exists():
            raise input_error(
                f"{src} has no {need}.",
                f"The card's layout is {ENCODER_DIR}/ + {HEAD_FILE} + {MODEL_CONFIG}.",
            )
    cfg = _read_json(src / MODEL_CONFIG)
    pooling = cfg.get("pooling", "last_token")
    if pooling != "last_token":
        raise input_error(
            f"{MODEL_CONFIG}: pooling {pooling!r} is not supported.", "Use 'last_token'."
        )
    encoder = AutoModel.from_pretrained(
        str(src / ENCODER_DIR), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    try:
        state = torch.load(src / HEAD_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise input_error(
            f"Cannot load {src / HEAD_FILE}: {exc}",
            "Save the head with torch.save(head.state_dict(), 'head.pt').",
        ) from None
    if not isinstance(state, dict):
        raise input_error(f"{src / HEAD_FILE} is not a state_dict.")
    head = _build_head(torch, state, cfg, src / HEAD_FILE)
    if head[0].in_features != encoder.config.hidden_size:
        raise input_error(
            f"{HEAD_FILE} expects hidden size {head[0].in_features}, but the encoder has "
            f"{encoder.config.hidden_size}."
        )

    class CardExport(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = encoder
            self.head = head

        def forward(self, input_ids, attention_mask):
            hidden = self.model(
                input_ids=input_ids,
                attention_mask=additive_causal_mask(torch, attention_mask),
                use_cache=False,
            ).last_hidden_state
            # The last real token, for right or left padding alike.
            last = input_ids.shape[1] - 1 - attention_mask.flip(1).argmax(1)
            return self.head(hidden[torch.arange(hidden.shape[0]), last])

    def reference(ids, mask):
        # The encoder's own 2-D mask handling; right padding, so the last real token is at
        # attention_mask.sum() - 1 (Qwen3-Embedding's last-token pooling).
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return head(hidden[torch.arange(ids.shape[0]), mask.sum(1) - 1])

    labels = {str(k): str(v) for k, v in (cfg.get("id2label") or {}).items()}
    max_length = int(cfg.get("max_length") or _tokenizer_max_length(src) or DEFAULT_MAX_LENGTH)
    config = encoder.config.to_dict()
    return Source(
        "card",
        CardExport().eval(),
        reference,
        config,
        [src, src / ENCODER_DIR],
        max_length,
        labels,
    )


def _tokenizer_max_length(src: Path) -> int | None:
    for folder in (src, src / ENCODER_DIR):
        path = folder / "tokenizer_config.json"
        if path.exists():
            value = _read_json(path).get("model_max_length")
            # Tokenizers often say "no limit" with a huge number: not a training length.
            if isinstance(value, int) and 0 < value <= MAX_SANE_LENGTH:
                return value
    return None


def load_source(src: Path) -> Source:
    src = Path(src).expanduser()
    if not src.is_dir():
        raise input_error(f"{src} is not a folder.")
    return load_card(src) if source_kind(src) == "card" else load_seqcls(src)
