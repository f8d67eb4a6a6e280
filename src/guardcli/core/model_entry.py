"""One catalog entry (`ModelEntry`): a model's family, hub repo, defaults, and the files each
variant needs; the ONNX variant names and their files."""

from __future__ import annotations

from dataclasses import dataclass, field

from guardcli.core import registry
from guardcli.core.errors import ExitCode, GuardError

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
# What a transformers checkpoint needs to be exported (an entry whose repo ships no ONNX):
# weights (safetensors), config, and every tokenizer file a fast tokenizer may be built from.
CHECKPOINT_FILES = (
    *TOKENIZER_FILES,
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spm.model",
    "sentencepiece.bpe.model",
)


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
    # The repo ships a transformers checkpoint and no ONNX graphs: `guard fetch` downloads
    # CHECKPOINT_FILES and exports the variants locally (the family's `guard export` recipe).
    checkpoint: bool = False

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
