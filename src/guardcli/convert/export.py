"""`guard export`: a local transformers checkpoint -> ONNX FP32 in the CSAM-Guard layout.

Two kinds of source are read:

- a `*ForSequenceClassification` checkpoint (config.json + weights, e.g. a Qwen3 fine-tune):
  transformers' own pooling is kept, i.e. the logits at the rightmost token that is not the pad id;
- the card's PyTorch layout: `encoder/` (an AutoModel checkpoint, e.g. Qwen3-Embedding), `head.pt`
  (the MLP head's state_dict) and `model_config.json`::

      {"hidden": 1024, "head_hidden": 256, "num_labels": 2, "activation": "gelu",
       "pooling": "last_token", "max_length": 384, "id2label": {"0": "safe", "1": "unsafe"}}

  `hidden`, `num_labels` and `head_hidden` are checked against head.pt; `activation` (gelu, relu,
  silu, tanh; default gelu) sits between the head's Linear layers, taken from head.pt in
  state_dict order; `pooling` is `last_token` (the last token whose attention mask is 1);
  `max_length` and `id2label` are optional.

The output folder holds the tokenizer files, config.json (the encoder's, with id2label, and
`"guardcli": {"max_length": N, "exported_from": "seqcls"|"card"}`) and onnx/model.onnx
(inputs input_ids/attention_mask [batch, sequence], output logits [batch, num_labels], weights in
one external-data file when over 2 GB); FP16/INT8 variants of an earlier export are removed. The
export is checked against PyTorch before it counts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import ONNX_VARIANT_FILES
from ..errors import ExitCode, GuardError, input_error, require_torch
from .onnx_recipes import model_size

MODEL_CONFIG = "model_config.json"
HEAD_FILE = "head.pt"
ENCODER_DIR = "encoder"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)
ACTIVATIONS = ("gelu", "relu", "silu", "tanh")
DEFAULT_TOLERANCE = 1e-4
# --family values for classifiers (the causal ones are export_causal.CAUSAL_FAMILIES).
EXPORT_FAMILIES = ("seqcls", "hf-seqcls")
DEFAULT_MAX_LENGTH = 384
MAX_SANE_LENGTH = 32_768
# config.json key for what guardcli adds (not "max_length": old configs use it for generation).
CONFIG_KEY = "guardcli"
# Neutral prompts of different lengths, so that the check runs a padded batch.
CHECK_PROMPTS = (
    "A watercolor of a lighthouse at dusk.",
    "hi",
    "Write a short poem about the sea, the wind and a small boat that returns home at night.",
    "Ein Rezept für Apfelkuchen, bitte.",
    "¿Cuál es la capital de Australia?\n",
    "Summarise the plot of a detective novel set in 1920s Shanghai in three sentences.",
)


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


@dataclass
class ExportResult:
    out: Path
    kind: str
    graph: Path
    bytes: int
    external_data: bool
    max_abs_diff: float
    prompts: int
    tolerance: float
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    @classmethod
    def checked(
        cls,
        out: Path,
        kind: str,
        graph: Path,
        diff: float,
        prompts: int,
        tolerance: float,
        *,
        reference: str,
        hint: str,
    ) -> ExportResult:
        """The result of an export whose logits differ from `reference` by `diff`; a
        GuardError (exit 3, files left for a look) when that is above `tolerance`."""
        result = cls(
            out=out,
            kind=kind,
            graph=graph,
            bytes=model_size(graph),
            external_data=graph.with_name(graph.name + "_data").exists(),
            max_abs_diff=diff,
            prompts=prompts,
            tolerance=tolerance,
        )
        if not result.ok:
            raise GuardError(
                f"The ONNX export differs from {reference}: max |Δ logit| {diff:.3g} > "
                f"{tolerance:g} on {prompts} prompts.",
                hint=f"Do not ship {graph}. {hint}",
                code=ExitCode.MODEL,
            )
        return result


def _torch():
    return require_torch("Exporting a checkpoint")


def additive_causal_mask(torch: Any, attention_mask: Any) -> Any:
    """[B, 1, L, L] float mask: 0 where a query may attend, the float minimum elsewhere.

    Handing the encoder a 4-D mask keeps the TorchScript export free of the DynamicCache/vmap
    machinery transformers uses to build masks from a 2-D one."""
    length = attention_mask.shape[1]
    keys = attention_mask.bool()[:, None, None, :]
    causal = torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
    allowed = causal[None, None, :, :] & keys
    return torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
        ~allowed, torch.finfo(torch.float32).min
    )


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


# ---------------------------------------------------------------------------- the two sources


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


# ---------------------------------------------------------------------------- writing


def copy_tokenizer(dirs: list[Path], out: Path) -> list[str]:
    """Copy the tokenizer files from the first folder that has tokenizer.json."""
    for folder in dirs:
        if (folder / "tokenizer.json").exists():
            copied = []
            for name in TOKENIZER_FILES:
                if (folder / name).exists():
                    shutil.copyfile(folder / name, out / name)
                    copied.append(name)
            return copied
    raise input_error(
        f"No tokenizer.json in {' or '.join(str(d) for d in dirs)}.",
        "guardcli runs fast tokenizers: save one with "
        "AutoTokenizer.from_pretrained(...).save_pretrained(SRC).",
    )


def write_config(source: Source, out: Path) -> None:
    config = dict(source.config)
    labels = source.id2label or {"0": "safe", "1": "unsafe"}
    config.update(
        id2label=labels,
        label2id={v: int(k) for k, v in labels.items()},
    )
    config[CONFIG_KEY] = {"max_length": source.max_length, "exported_from": source.kind}
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")


def check_prompts(out: Path, source: Source, prompts: tuple[str, ...]):
    """Token ids of `prompts` with the exported tokenizer, right-padded: (ids, mask)."""
    from ..batching import pad
    from ..tokenize import TextTokenizer

    tok = TextTokenizer(out, source.max_length)
    return pad([e.ids for e in tok.encode(list(prompts))], tok.pad_id)


def parity(source: Source, graph: Path, ids, mask) -> float:
    """max |ONNX logits - PyTorch logits| over a padded batch."""
    import numpy as np
    import onnxruntime as ort

    torch = _torch()
    with torch.no_grad():
        expected = source.reference(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    if got.shape != expected.shape:
        raise GuardError(f"ONNX logits have shape {got.shape}, PyTorch {expected.shape}.")
    return float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())


def remove_stale_variants(out: Path, log=lambda _: None) -> None:
    """Variants made from an earlier model.onnx would no longer match a new one."""
    for variant in ("fp16", "int8"):
        stale = out / ONNX_VARIANT_FILES[variant]
        for path in (stale, stale.with_name(stale.name + "_data")):
            if path.exists():
                log(f"removing {path} (made from the previous export)")
                path.unlink()


def export_checkpoint(
    src: Path,
    out: Path,
    *,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] = CHECK_PROMPTS,
    family: str | None = None,
    log=lambda _: None,
) -> ExportResult:
    """Export `src` to `out` (CSAM-Guard layout) and check it against PyTorch.

    A causal LM (config architectures *ForCausalLM, or `family` a generative family) goes to
    `export_causal.export_causal_checkpoint` instead: the KV-cache layout its family runs.

    `max_length` (recorded in config.json) defaults to model_config.json's, else the tokenizer's
    model_max_length when it is a real limit, else 384. `tolerance` defaults to 1e-4 for
    classifiers and 1e-3 for causal LMs.

    Raises GuardError (exit 3) when max |Δ logit| is above `tolerance`; the files stay for a look.
    """
    from ..synthetic import export_seqcls_onnx
    from . import export_causal
    from .export_causal import CAUSAL_FAMILIES, export_causal_checkpoint, is_causal_lm

    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise input_error(f"{src} is not a folder.")
    if out.resolve() == src.resolve():
        raise input_error("--out must be another folder than the source.")
    if family is not None and family not in (*CAUSAL_FAMILIES, *EXPORT_FAMILIES):
        raise input_error(
            f"Unknown --family {family!r}.",
            f"Choose one of: {', '.join((*EXPORT_FAMILIES, *CAUSAL_FAMILIES))}.",
        )
    from ..families.hf_seqcls.detect import is_hf_seqcls_folder

    if family == "hf-seqcls" or (family is None and is_hf_seqcls_folder(src)):
        # Encoders (BERT, RoBERTa, DeBERTa, ModernBERT): transformers' own pooling and head,
        # no causal mask (families/hf_seqcls/export.py).
        from ..families.hf_seqcls.export import export_hf_seqcls

        return export_hf_seqcls(
            src,
            out,
            tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
            max_length=max_length,
            prompts=prompts,
            log=log,
        )
    causal = family in CAUSAL_FAMILIES if family else is_causal_lm(src)
    if causal:
        if max_length is not None:
            raise input_error("--max-length applies to classifiers, not to a causal LM.")
        return export_causal_checkpoint(
            src,
            out,
            family=family,
            tolerance=export_causal.DEFAULT_TOLERANCE if tolerance is None else tolerance,
            log=log,
        )
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    log(f"reading {src}")
    source = load_source(src)
    if max_length is not None:
        source.max_length = max_length
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_variants(out, log)
    copy_tokenizer(source.tokenizer_dirs, out)
    write_config(source, out)
    graph = out / ONNX_VARIANT_FILES["fp32"]
    log(f"exporting {source.kind} to {graph}")
    export_seqcls_onnx(source.module, graph, max_length=source.max_length)
    ids, mask = check_prompts(out, source, prompts)
    log(f"checking against PyTorch on {len(prompts)} prompts")
    diff = parity(source, graph, ids, mask)
    return ExportResult.checked(
        out,
        source.kind,
        graph,
        diff,
        len(prompts),
        tolerance,
        reference="PyTorch",
        hint="Rerun with GUARD_DEBUG=1 and report the model's architecture; a custom head or "
        "pooling may need its own export wrapper.",
    )


def save_card_layout(
    encoder: Any, head: Any, out: Path, *, max_length: int, activation: str = "gelu"
) -> Path:
    """Write the card's PyTorch layout: encoder/ (save_pretrained), head.pt, model_config.json.

    `head` is an nn.Sequential of Linear layers with `activation` between them."""
    torch = _torch()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(out / ENCODER_DIR))
    torch.save(head.state_dict(), out / HEAD_FILE)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    cfg = {
        "hidden": linears[0].in_features,
        "head_hidden": linears[0].out_features,
        "num_labels": linears[-1].out_features,
        "activation": activation,
        "pooling": "last_token",
        "max_length": max_length,
        "id2label": {"0": "safe", "1": "unsafe"},
    }
    (out / MODEL_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    return out
