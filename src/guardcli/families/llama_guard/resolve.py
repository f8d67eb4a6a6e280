"""Which Llama Guard folder this is and which variant runs: an exported KV-cache graph
(onnx/model.onnx, see runtime.causal_onnx) on onnxruntime, else the safetensors with torch."""

from __future__ import annotations

from pathlib import Path

from guardcli.core.catalog import ModelEntry
from guardcli.core.registry import marker_family
from guardcli.core.resolve import (
    ResolvedModel,
    checkpoint_variants,
    config_architectures,
    resolve_causal,
)
from guardcli.families.llama_guard.format import folder_template

NAME = "llama-guard"


def is_llama_guard_folder(model_dir: Path) -> bool:
    """A guardcli marker naming the family, or a LlamaForCausalLM config whose chat template
    carries Llama Guard's category list."""
    named = marker_family(model_dir)
    if named is not None:
        return named == NAME
    architectures = config_architectures(model_dir) or []
    return "LlamaForCausalLM" in architectures and folder_template(model_dir) is not None


def resolve_folder(path: Path, variant: str, entry: ModelEntry | None) -> ResolvedModel:
    return resolve_causal(NAME, path, variant, entry)


folder_variants = checkpoint_variants
