"""Which Qwen3Guard-Gen folder this is and which variant runs: an exported KV-cache graph
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
from guardcli.families.qwen3guard_gen.format import model_template

NAME = "qwen3guard-gen"


def is_qwen3guard_folder(model_dir: Path) -> bool:
    """A guardcli marker naming the family, or a Qwen3ForCausalLM config whose chat template
    carries Qwen3Guard's safety policy."""
    named = marker_family(model_dir)
    if named is not None:
        return named == NAME
    architectures = config_architectures(model_dir) or []
    if "Qwen3ForCausalLM" not in architectures:
        return False
    return "Safety: Controversial" in model_template(model_dir)


def resolve_folder(path: Path, variant: str, entry: ModelEntry | None) -> ResolvedModel:
    return resolve_causal(NAME, path, variant, entry)


folder_variants = checkpoint_variants
