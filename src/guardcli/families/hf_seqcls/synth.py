"""`guard synth hf-seqcls --arch ...`: random-weight `*ForSequenceClassification` checkpoints of
the encoder architectures the catalog's guards use, built with transformers' own config classes.

The tokenizer is NOT the real one: no real vocabulary ships offline here, so a small tokenizer of
the architecture's kind (WordPiece for BERT, byte-level BPE for RoBERTa and ModernBERT, a
Metaspace Unigram for the SentencePiece of DeBERTa-v2/v3 and XLM-R) is trained on the fly from
a fixed neutral corpus, with the architecture's special tokens and template. Its ids mean
nothing; its layout (tokenizer.json + tokenizer_config.json) is the real one, and the guard runs
it as it would the real tokenizer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError, input_error, require_torch
from guardcli.families.hf_seqcls.synth_tokenizer import (  # noqa: F401 - importable from here
    SPECIALS,
    TINY_VOCAB,
    TOKENIZER_NOTE,
    _corpus,
    save_tokenizer,
    train_tokenizer,
)

ARCHES = ("deberta-v2", "roberta", "xlm-roberta", "bert", "modernbert")
SIZES = ("tiny", "full")
TINY_MAX_LENGTH = 64


@dataclass(frozen=True)
class Dims:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_length: int


# full: Llama Prompt Guard 2 86M's encoder (mDeBERTa-v3-base: 768 x 12, 250k vocabulary) for
# deberta-v2; the base sizes of the other architectures.
DIMS = {
    ("deberta-v2", "full"): Dims(768, 12, 12, 3072, 251_000, 512),
    ("roberta", "full"): Dims(768, 12, 12, 3072, 50_265, 512),
    ("xlm-roberta", "full"): Dims(768, 12, 12, 3072, 250_002, 512),
    ("bert", "full"): Dims(768, 12, 12, 3072, 30_522, 512),
    ("modernbert", "full"): Dims(768, 22, 12, 1152, 50_368, 8192),
}
for _arch in ARCHES:
    DIMS[(_arch, "tiny")] = Dims(32, 2, 4, 64, TINY_VOCAB, TINY_MAX_LENGTH)


def model_config(arch: str, dims: Dims, ids: dict, *, num_labels: int, multi_label: bool):
    """transformers' config class of `arch` with `dims` and the tokenizer's special ids."""
    labels = _labels(num_labels, multi_label)
    common: dict[str, Any] = dict(
        vocab_size=dims.vocab,
        hidden_size=dims.hidden,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        intermediate_size=dims.intermediate,
        pad_token_id=ids["pad"],
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        # Wider random weights in tiny models, so that different texts get different scores
        # (at the usual 0.02, two tiny layers give every text the same pooled vector).
        initializer_range=0.02 if dims.hidden >= 256 else 0.1,
    )
    if arch == "bert":
        from transformers import BertConfig

        return BertConfig(max_position_embeddings=dims.max_length, type_vocab_size=2, **common)
    if arch in ("roberta", "xlm-roberta"):
        from transformers import RobertaConfig, XLMRobertaConfig

        # RoBERTa (and XLM-R) count positions from pad_token_id + 1: two more than the window.
        kind = RobertaConfig if arch == "roberta" else XLMRobertaConfig
        return kind(
            max_position_embeddings=dims.max_length + 2,
            type_vocab_size=1,
            bos_token_id=ids["cls"],
            eos_token_id=ids["sep"],
            **common,
        )
    if arch == "deberta-v2":
        from transformers import DebertaV2Config

        # DeBERTa-v3's layout (microsoft/deberta-v3-base, Prompt Guard 2's base); the modelling
        # code reads these by getattr, so they pass as extra keys.
        v3: dict[str, Any] = dict(
            relative_attention=True,
            position_buckets=256 if dims.max_length >= 512 else 16,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            pos_att_type=["p2c", "c2p"],
            max_relative_positions=-1,
            position_biased_input=False,
        )
        return DebertaV2Config(
            max_position_embeddings=dims.max_length,
            layer_norm_eps=1e-7,
            type_vocab_size=0,
            **v3,
            **common,
        )
    if arch == "modernbert":
        from transformers import ModernBertConfig

        # ModernBERT-base: global attention every third layer, sliding windows between.
        layers = [
            "full_attention" if i % 3 == 0 else "sliding_attention" for i in range(dims.layers)
        ]
        return ModernBertConfig(
            max_position_embeddings=dims.max_length,
            local_attention=128 if dims.max_length > 128 else 16,
            layer_types=layers,
            cls_token_id=ids["cls"],
            sep_token_id=ids["sep"],
            bos_token_id=ids["cls"],
            eos_token_id=ids["sep"],
            **common,
        )
    raise GuardError(f"Unknown --arch {arch!r}; choose one of {', '.join(ARCHES)}.")


def _labels(num_labels: int, multi_label: bool) -> list[str]:
    if multi_label:
        names = ["toxicity", "severe_toxicity", "obscene", "threat", "insult", "identity_attack"]
        return [names[i] if i < len(names) else f"label_{i}" for i in range(num_labels)]
    if num_labels == 2:
        return ["BENIGN", "MALICIOUS"]
    return [f"LABEL_{i}" for i in range(num_labels)]


def build_checkpoint(
    out: Path,
    arch: str,
    *,
    size: str = "tiny",
    seed: int = 0,
    num_labels: int = 2,
    multi_label: bool = False,
) -> Path:
    """Write a random-weight transformers checkpoint (config.json, model.safetensors, tokenizer)."""
    if arch not in ARCHES:
        raise GuardError(f"Unknown --arch {arch!r}; choose one of {', '.join(ARCHES)}.")
    if size not in SIZES:
        raise GuardError(f"Unknown --size {size!r}; choose one of {', '.join(SIZES)}.")
    torch = require_torch("Building synthetic models")
    from transformers import AutoModelForSequenceClassification

    dims = DIMS[(arch, size)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = save_tokenizer(arch, out, dims.max_length)
    config = model_config(arch, dims, ids, num_labels=num_labels, multi_label=multi_label)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    spread_head(model, out)
    model.save_pretrained(str(out))
    return out


def spread_head(model: Any, folder: Path, spread: float = 2.0) -> None:
    """Rescale the random head's last layer so that logits over the corpus are centred with
    standard deviation `spread`: verdicts spread over (0, 1) instead of sitting at one value."""
    torch = require_torch("Building synthetic models")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    num_labels = model.config.num_labels
    name = [
        n
        for n, p in model.named_parameters()
        if n.endswith("weight") and p.dim() == 2 and p.shape[0] == num_labels
    ][-1]
    params = dict(model.named_parameters())
    weight, bias = params[name], params.get(name[: -len("weight")] + "bias")
    enc = tok(_corpus()[1:65], padding=True, truncation=True, return_tensors="pt")
    enc.pop("token_type_ids", None)
    with torch.no_grad():
        logits = model(**enc).logits.double()
        mean = logits.mean(0)
        scale = spread / max(float((logits - mean).std()), 1e-6)
        weight.mul_(scale)
        if bias is not None:
            bias.copy_(((bias.double() - mean) * scale).to(bias.dtype))


def synth_hf_seqcls(
    out: Path,
    *,
    arch: str,
    size: str = "tiny",
    seed: int = 0,
    num_labels: int = 2,
    multi_label: bool = False,
    variants: tuple[str, ...] = ("fp32", "fp16", "int8"),
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """A random-weight checkpoint in `out`, exported to onnx/ (checked against transformers) and
    converted to FP16/INT8 by the existing recipes."""
    from guardcli.core.synthetic import write_marker
    from guardcli.families.hf_seqcls.export import export_hf_seqcls, make_variants

    start = time.perf_counter()
    out = Path(out)
    log(f"building a random-weight {arch} ({size}) checkpoint")
    build_checkpoint(
        out, arch, size=size, seed=seed, num_labels=num_labels, multi_label=multi_label
    )
    log("exporting FP32 ONNX and checking it against transformers")
    result = export_hf_seqcls(out, out)
    log(f"max |Δ logit| {result.max_abs_diff:.2g}")
    make_variants(out, [v for v in variants if v != "fp32"], log=log)
    write_marker(out, "hf-seqcls", size=size, seed=seed, arch=arch, tokenizer=TOKENIZER_NOTE)
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def synth(
    out: Path,
    *,
    name: str,
    size: str,
    seed: int,
    log: Callable[[str], None],
    arch: str = "deberta-v2",
    multi_label: bool = False,
    **_: object,
) -> tuple[Path, str]:
    """`guard synth hf-seqcls [--arch A] [--multi-label]`: (folder, what its weights are)."""
    if arch not in ARCHES:
        raise input_error(f"Unknown --arch {arch!r}.", f"Choose one of: {', '.join(ARCHES)}.")
    path = synth_hf_seqcls(
        out,
        arch=arch,
        size=size,
        seed=seed,
        num_labels=6 if multi_label else 2,
        multi_label=multi_label,
        log=log,
    )
    return path, f"{arch}, random weights; {TOKENIZER_NOTE}"


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
