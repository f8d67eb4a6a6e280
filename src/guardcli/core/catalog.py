"""Known models: name, family, hub repo, variant -> files, defaults.

The built-in entries can be extended or overridden by a user file (`$GUARD_MODELS`, else
`~/.config/guardcli/models.toml`), so an in-house fine-tune is a first-class citizen.
"""

from __future__ import annotations

import os
from pathlib import Path

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.model_entry import (  # noqa: F401 - importable from here
    ONNX_VARIANT_FILES,
    TOKENIZER_FILES,
    VARIANTS,
    ModelEntry,
    _onnx_variants,
    check_count,
)
from guardcli.core.user_catalog import (  # noqa: F401 - importable from here
    USER_FILE_HINT,
    _toml_loads,
    _user_entry,
    user_catalog_path,
)

_TOKENIZER_GEN = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
)
_QWEN3GUARD_BF16 = {"bf16": ("*.safetensors", "model.safetensors.index.json")}
_OPENCC_COMMON = (
    "weight_frame.json",
    "adapter_config.json",
    "train_config.json",
    "*.pt",
    "thresholds.json",
    "threshold.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)
_OPENCC_LORA = {"lora": ("adapter_model.safetensors", "adapter_model.bin")}


def _qwen3guard(kind: str, size: str, max_length: int, what: str) -> ModelEntry:
    """Qwen3Guard-Gen or -Stream at a size: BF16 safetensors and the Gen tokenizer files. A
    Stream repo ships no ONNX: `guard fetch` exports its graphs from the checkpoint (the bf16
    variant is the checkpoint itself, run by the torch reference)."""
    suffix = "" if size == "0.6B" else f"-{size.lower()}"
    family = f"qwen3guard-{kind.lower()}"
    stream = kind == "Stream"
    return ModelEntry(
        name=f"{family}{suffix}",
        family=family,
        repo=f"Qwen/Qwen3Guard-{kind}-{size}",
        threshold=0.5,
        max_length=max_length,
        variants={**_onnx_variants(), **_QWEN3GUARD_BF16} if stream else dict(_QWEN3GUARD_BF16),
        common=_TOKENIZER_GEN,
        required=("tokenizer.json", "config.json"),
        description=f"Qwen3Guard-{kind} {size}: {what}",
        checkpoint=stream,
    )


_GEN = (
    "generative guard (Safe/Controversial/Unsafe + categories), BF16 safetensors; threshold "
    "applies to score mode"
)
_STREAM = (
    "token-level guard for streamed answers (`guard stream`), BF16 safetensors; ONNX made by "
    "`guard fetch`"
)


def _opencc(name: str, kind: str, what: str) -> ModelEntry:
    return ModelEntry(
        name=name,
        family="opencc",
        repo=f"centrepourlasecuriteia/opencc-{kind}-escalation",
        threshold=0.34 if kind == "jb" else None,
        max_length=None,
        variants=dict(_OPENCC_LORA),
        common=_OPENCC_COMMON,
        required=("weight_frame.json",),
        description=f"OpenCC {what}: LoRA adapter + linear head on a base LM named in "
        "weight_frame.json (fetched separately)",
    )


BUILTIN: dict[str, ModelEntry] = {
    "csam-guard": ModelEntry(
        name="csam-guard",
        family="seqcls",
        repo="urtho/Qwen3-CSAM-Guard-0.6b-v1",
        threshold=0.50,
        max_length=384,
        description="Qwen3-Embedding-0.6B + MLP head, binary (CSAM prompt filter)",
    ),
    "qwen3guard-gen": _qwen3guard("Gen", "0.6B", 32768, _GEN),
    "qwen3guard-gen-4b": _qwen3guard("Gen", "4B", 32768, _GEN),
    "qwen3guard-gen-8b": _qwen3guard("Gen", "8B", 32768, _GEN),
    "qwen3guard-stream": _qwen3guard("Stream", "0.6B", 8192, _STREAM),
    "qwen3guard-stream-4b": _qwen3guard("Stream", "4B", 8192, _STREAM),
    "qwen3guard-stream-8b": _qwen3guard("Stream", "8B", 8192, _STREAM),
    "opencc-cm": _opencc("opencc-cm", "cm", "content moderation (11 harm categories, multilabel)"),
    "opencc-jb": _opencc("opencc-jb", "jb", "jailbreak detector (binary)"),
}


def _hf_seqcls(
    name: str, repo: str, threshold: float, description: str, checkpoint: bool = True
) -> ModelEntry:
    """A transformers encoder classifier (families/hf_seqcls; unsafe labels listed there).
    A repo that ships no ONNX is a checkpoint that `guard fetch` exports locally."""
    return ModelEntry(
        name=name,
        family="hf-seqcls",
        repo=repo,
        threshold=threshold,
        max_length=512,
        description=description,
        checkpoint=checkpoint,
    )


BUILTIN.update(
    {
        e.name: e
        for e in (
            # LlamaFirewall's PromptGuardScanner blocks at >= 0.9; the card publishes none.
            _hf_seqcls(
                "llama-prompt-guard-2-86m",
                "meta-llama/Llama-Prompt-Guard-2-86M",
                0.9,
                "Llama Prompt Guard 2 86M (mDeBERTa-v3-base): prompt injection/jailbreak, "
                "MALICIOUS vs BENIGN; gated; ONNX made by `guard fetch`",
            ),
            _hf_seqcls(
                "llama-prompt-guard-2-22m",
                "meta-llama/Llama-Prompt-Guard-2-22M",
                0.9,
                "Llama Prompt Guard 2 22M (DeBERTa-v3-xsmall, English): prompt injection/"
                "jailbreak; gated; ONNX made by `guard fetch`",
            ),
            # llm-guard's PromptInjection default threshold.
            _hf_seqcls(
                "deberta-v3-prompt-injection-v2",
                "protectai/deberta-v3-base-prompt-injection-v2",
                0.92,
                "protectai DeBERTa-v3-base prompt-injection classifier (INJECTION vs SAFE); "
                "the repo ships onnx/model.onnx",
                checkpoint=False,
            ),
            _hf_seqcls(
                "granite-guardian-hap-38m",
                "ibm-granite/granite-guardian-hap-38m",
                0.5,
                "IBM Granite Guardian HAP 38M (4-layer RoBERTa): hate, abuse, profanity, "
                "binary; ONNX made by `guard fetch`",
            ),
            _hf_seqcls(
                "granite-guardian-hap-125m",
                "ibm-granite/granite-guardian-hap-125m",
                0.5,
                "IBM Granite Guardian HAP 125M (RoBERTa): hate, abuse, profanity, binary; "
                "ONNX made by `guard fetch`",
            ),
            _hf_seqcls(
                "unbiased-toxic-roberta",
                "unitary/unbiased-toxic-roberta",
                0.5,
                "Detoxify unbiased RoBERTa: multi-label toxicity (sigmoid per label; the 7 harm "
                "labels count); ONNX made by `guard fetch`",
            ),
        )
    }
)


def _llama_guard(size: str, what: str) -> ModelEntry:
    """Llama Guard 3 at a size: BF16 safetensors, the tokenizer files and the chat template."""
    return ModelEntry(
        name=f"llama-guard-3-{size.lower()}",
        family="llama-guard",
        repo=f"meta-llama/Llama-Guard-3-{size}",
        threshold=0.5,
        max_length=131072,
        variants=dict(_QWEN3GUARD_BF16),
        common=_TOKENIZER_GEN,
        required=("tokenizer.json", "config.json"),
        description=f"Llama Guard 3 {size} ({what}): generative guard (safe/unsafe + S-codes), "
        "BF16 safetensors; gated; threshold applies to score mode",
    )


# Llama Guard 4 12B is left out: its chat template is not established (docs/llama-guard.md).
BUILTIN.update(
    {
        e.name: e
        for e in (
            _llama_guard("1B", "Llama-3.2-1B, S1-S13, --policy via its categories"),
            _llama_guard("8B", "Llama-3.1-8B, S1-S14"),
        )
    }
)
# Kept for callers that read the built-ins directly.
CATALOG = BUILTIN


def load_catalog(path: Path | None = None) -> dict[str, ModelEntry]:
    """The built-in entries, extended or overridden by the user file when it exists."""
    path = path or user_catalog_path()
    catalog = dict(BUILTIN)
    if not path.is_file():
        if os.environ.get("GUARD_MODELS"):
            raise GuardError(
                f"GUARD_MODELS points to {path}, which does not exist.", code=ExitCode.INPUT
            )
        return catalog
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise GuardError(f"Cannot read {path}: {exc.strerror}.", code=ExitCode.INPUT) from None
    except UnicodeDecodeError as exc:
        raise GuardError(
            f"{path} is not valid TOML: it is not UTF-8 text (byte {exc.start}).",
            hint="Save the file as UTF-8.",
            code=ExitCode.INPUT,
        ) from None
    data = _toml_loads(text, path)
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise GuardError(f"{path}: 'models' must be a table.", code=ExitCode.INPUT)
    for name, spec in models.items():
        catalog[name] = _user_entry(name, spec, catalog.get(name), path)
    return catalog


def get_entry(name: str) -> ModelEntry:
    catalog = load_catalog()
    try:
        return catalog[name]
    except KeyError:
        known = ", ".join(sorted(catalog))
        raise GuardError(
            f"Unknown model {name!r}.",
            hint=f"Known models: {known}. Or pass --model DIR with a local model folder.",
        ) from None
