"""Known models: name, family, hub repo, variant -> files, defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import GuardError

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


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    repo: str
    threshold: float
    max_length: int
    variants: dict[str, str] = field(default_factory=lambda: dict(ONNX_VARIANT_FILES))
    description: str = ""

    def variant_patterns(self, variant: str) -> list[str]:
        """allow-patterns for one variant: its graph, its external data, the tokenizer files."""
        graph = self.variants[variant]
        return [graph, f"{graph}_data", f"{graph}.data", *TOKENIZER_FILES]


CATALOG: dict[str, ModelEntry] = {
    "csam-guard": ModelEntry(
        name="csam-guard",
        family="seqcls",
        repo="urtho/Qwen3-CSAM-Guard-0.6b-v1",
        threshold=0.50,
        max_length=384,
        description="Qwen3-Embedding-0.6B + MLP head, binary (CSAM prompt filter)",
    ),
}


def get_entry(name: str) -> ModelEntry:
    try:
        return CATALOG[name]
    except KeyError:
        known = ", ".join(sorted(CATALOG))
        raise GuardError(
            f"Unknown model {name!r}.",
            hint=f"Known models: {known}. Or pass --model DIR with a local model folder.",
        ) from None
