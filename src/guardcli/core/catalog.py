"""Known models: name, family, hub repo, variant -> files, defaults.

The built-in entries can be extended or overridden by a user file (`$GUARD_MODELS`, else
`~/.config/guardcli/models.toml`), so an in-house fine-tune is a first-class citizen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardcli.core import registry
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.thresholds import parse_threshold

# Files every ONNX sequence-classifier variant needs besides its own graph.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "config.json",
)
ONNX_VARIANT_FILES = {
    "fp32": "onnx/model.onnx",
    "fp16": "onnx/model_fp16.onnx",
    "int8": "onnx/model_quantized.onnx",
}
VARIANTS = tuple(ONNX_VARIANT_FILES)


def check_count(value: object, where: str, code: ExitCode = ExitCode.INPUT) -> int:
    """A count (tokens, inputs, threads): a whole number >= 1, else a GuardError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GuardError(f"{where} must be a whole number >= 1, not {value!r}.", code=code)
    return value


def _onnx_variants() -> dict[str, tuple[str, ...]]:
    return {v: (graph,) for v, graph in ONNX_VARIANT_FILES.items()}


@dataclass(frozen=True)
class ModelEntry:
    """One model: where it lives and which files each variant needs.

    `variants` maps a variant to its own files (exact paths or glob patterns; the first one must
    be present for the variant to count as cached); `common` lists what every variant also needs
    (tokenizer, configs), of which `required` must be present.
    """

    name: str
    family: str
    repo: str
    threshold: float | None
    max_length: int | None
    variants: dict[str, tuple[str, ...]] = field(default_factory=_onnx_variants)
    common: tuple[str, ...] = TOKENIZER_FILES
    required: tuple[str, ...] = ("tokenizer.json",)
    description: str = ""
    source: str = "built-in"

    @property
    def runs_onnx(self) -> bool:
        return registry.get(self.family).runs_onnx

    def variant_patterns(self, variant: str) -> list[str]:
        """allow-patterns for one variant: its files (an ONNX graph brings its external data)
        and the files every variant needs."""
        patterns: list[str] = []
        for pattern in self.variants[variant]:
            patterns.append(pattern)
            if pattern.endswith(".onnx"):
                patterns += [f"{pattern}_data", f"{pattern}.data"]
        return [*patterns, *self.common]

    def threshold_text(self) -> str:
        return "per-category" if self.threshold is None else f"{self.threshold:g}"


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


def _qwen3guard(size: str) -> ModelEntry:
    suffix = "" if size == "0.6B" else f"-{size.lower()}"
    return ModelEntry(
        name=f"qwen3guard-gen{suffix}",
        family="qwen3guard-gen",
        repo=f"Qwen/Qwen3Guard-Gen-{size}",
        threshold=0.5,
        max_length=32768,
        variants=dict(_QWEN3GUARD_BF16),
        common=_TOKENIZER_GEN,
        required=("tokenizer.json", "config.json"),
        description=f"Qwen3Guard-Gen {size}: generative guard (Safe/Controversial/Unsafe + "
        "categories), BF16 safetensors; threshold applies to score mode",
    )


def _qwen3guard_stream(size: str) -> ModelEntry:
    suffix = "" if size == "0.6B" else f"-{size.lower()}"
    return ModelEntry(
        name=f"qwen3guard-stream{suffix}",
        family="qwen3guard-stream",
        repo=f"Qwen/Qwen3Guard-Stream-{size}",
        threshold=0.5,
        max_length=8192,
        variants=dict(_QWEN3GUARD_BF16),
        common=_TOKENIZER_GEN,
        required=("tokenizer.json", "config.json"),
        description=f"Qwen3Guard-Stream {size}: token-level guard for streamed answers "
        "(`guard stream`), BF16 safetensors",
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
    "qwen3guard-gen": _qwen3guard("0.6B"),
    "qwen3guard-gen-4b": _qwen3guard("4B"),
    "qwen3guard-gen-8b": _qwen3guard("8B"),
    "qwen3guard-stream": _qwen3guard_stream("0.6B"),
    "qwen3guard-stream-4b": _qwen3guard_stream("4B"),
    "qwen3guard-stream-8b": _qwen3guard_stream("8B"),
    "opencc-cm": _opencc("opencc-cm", "cm", "content moderation (11 harm categories, multilabel)"),
    "opencc-jb": _opencc("opencc-jb", "jb", "jailbreak detector (binary)"),
}


def _hf_seqcls(name: str, repo: str, threshold: float, description: str) -> ModelEntry:
    """A transformers encoder classifier (families/hf_seqcls; unsafe labels listed there)."""
    return ModelEntry(
        name=name,
        family="hf-seqcls",
        repo=repo,
        threshold=threshold,
        max_length=512,
        description=description,
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
                "MALICIOUS vs BENIGN; gated; ONNX made by `guard export`",
            ),
            _hf_seqcls(
                "llama-prompt-guard-2-22m",
                "meta-llama/Llama-Prompt-Guard-2-22M",
                0.9,
                "Llama Prompt Guard 2 22M (DeBERTa-v3-xsmall, English): prompt injection/"
                "jailbreak; gated; ONNX made by `guard export`",
            ),
            # llm-guard's PromptInjection default threshold.
            _hf_seqcls(
                "deberta-v3-prompt-injection-v2",
                "protectai/deberta-v3-base-prompt-injection-v2",
                0.92,
                "protectai DeBERTa-v3-base prompt-injection classifier (INJECTION vs SAFE); "
                "the repo ships onnx/model.onnx",
            ),
            _hf_seqcls(
                "granite-guardian-hap-38m",
                "ibm-granite/granite-guardian-hap-38m",
                0.5,
                "IBM Granite Guardian HAP 38M (4-layer RoBERTa): hate, abuse, profanity, "
                "binary; ONNX made by `guard export`",
            ),
            _hf_seqcls(
                "granite-guardian-hap-125m",
                "ibm-granite/granite-guardian-hap-125m",
                0.5,
                "IBM Granite Guardian HAP 125M (RoBERTa): hate, abuse, profanity, binary; "
                "ONNX made by `guard export`",
            ),
            _hf_seqcls(
                "unbiased-toxic-roberta",
                "unitary/unbiased-toxic-roberta",
                0.5,
                "Detoxify unbiased RoBERTa: multi-label toxicity (sigmoid per label; the 7 harm "
                "labels count); ONNX made by `guard export`",
            ),
        )
    }
)
# Kept for callers that read the built-ins directly.
CATALOG = BUILTIN


def user_catalog_path() -> Path:
    """`$GUARD_MODELS`, else `$XDG_CONFIG_HOME/guardcli/models.toml` (~/.config by default)."""
    if env := os.environ.get("GUARD_MODELS"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "guardcli" / "models.toml"


def _toml_loads(text: str, path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
        except ModuleNotFoundError:
            raise GuardError(
                f"Reading {path} needs Python 3.11+ or the 'tomli' package.",
                hint="Install it with: pip install tomli (or unset GUARD_MODELS).",
                code=ExitCode.INPUT,
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GuardError(
            f"{path} is not valid TOML: {exc}.", code=ExitCode.INPUT, hint=USER_FILE_HINT
        ) from None


USER_FILE_HINT = (
    "Each model is a [models.NAME] table with repo, and optionally family (default seqcls), "
    "threshold, max_length, description and variants = {fp32 = 'onnx/model.onnx', ...}."
)


def _as_files(value: Any, where: str, path: Path) -> tuple[str, ...]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise GuardError(
            f"{path}: {where} must be a file path or a list of them.",
            code=ExitCode.INPUT,
            hint=USER_FILE_HINT,
        )
    return tuple(files)


def _user_entry(name: str, spec: Any, base: ModelEntry | None, path: Path) -> ModelEntry:
    if not isinstance(spec, dict):
        raise GuardError(f"{path}: [models.{name}] must be a table.", code=ExitCode.INPUT)
    known = {"repo", "family", "threshold", "max_length", "description", "variants", "files"}
    if unknown := sorted(set(spec) - known):
        raise GuardError(
            f"{path}: [models.{name}] has unknown key(s): {', '.join(unknown)}.",
            code=ExitCode.INPUT,
            hint=USER_FILE_HINT,
        )
    if base is None and "repo" not in spec:
        raise GuardError(f"{path}: [models.{name}] needs repo = 'org/name'.", code=ExitCode.INPUT)
    fields: dict[str, Any] = {}
    where = f"{path}: [models.{name}]"
    for key in ("repo", "family", "description"):
        if key in spec and not isinstance(spec[key], str):
            raise GuardError(f"{where} {key} must be a string.", code=ExitCode.INPUT)
    family = spec.get("family", base.family if base is not None else "seqcls")
    if family not in registry.names():
        raise GuardError(
            f"{where} family = {family!r} is not a model family guardcli knows.",
            hint=f"Known families: {', '.join(registry.names())}.",
            code=ExitCode.INPUT,
        )
    if base is not None:
        fields = {k: getattr(base, k) for k in base.__dataclass_fields__}
    else:
        described = registry.get(family)
        # A new entry that gives no threshold or max_length: the family's (the README documents
        # 512 for seqcls, the usual fine-tune context; a local folder keeps CSAM-Guard's 384).
        threshold = described.threshold
        max_length = described.entry_max_length or described.max_length
        fields = {"family": family, "threshold": threshold, "max_length": max_length}
    fields.update({k: spec[k] for k in ("repo", "family", "description") if k in spec})
    for key, kind in (("threshold", (int, float)), ("max_length", int)):
        if key in spec:
            if not isinstance(spec[key], kind) or isinstance(spec[key], bool):
                raise GuardError(
                    f"{path}: [models.{name}] {key} must be a number.", code=ExitCode.INPUT
                )
    if "threshold" in spec:
        fields["threshold"] = parse_threshold(spec["threshold"], f"{where} threshold")
    if "max_length" in spec:
        fields["max_length"] = check_count(spec["max_length"], f"{where} max_length")
    if "variants" in spec:
        if not isinstance(spec["variants"], dict) or not spec["variants"]:
            raise GuardError(
                f"{path}: [models.{name}] variants must be a table of variant = file(s).",
                code=ExitCode.INPUT,
                hint=USER_FILE_HINT,
            )
        fields["variants"] = {
            v: _as_files(f, f"variants.{v}", path) for v, f in spec["variants"].items()
        }
    if "files" in spec:
        fields["common"] = _as_files(spec["files"], "files", path)
    fields["name"] = name
    fields["source"] = str(path)
    return ModelEntry(**fields)


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
