"""Which Llama Guard folder this is and which variant runs: an exported KV-cache graph
(onnx/model.onnx, see runtime.causal_onnx) on onnxruntime, else the safetensors with torch."""

from __future__ import annotations

import json
from pathlib import Path

from guardcli.core.catalog import ONNX_VARIANT_FILES, ModelEntry
from guardcli.core.errors import GuardError
from guardcli.core.registry import get, marker_family
from guardcli.core.resolve import (
    ResolvedModel,
    entry_threshold,
    onnx_graphs,
    pick_variant,
    present_variants,
)
from guardcli.core.variants import TORCH_VARIANT
from guardcli.families.llama_guard.format import folder_template

NAME = "llama-guard"


def is_llama_guard_folder(model_dir: Path) -> bool:
    """A guardcli marker naming the family, or a LlamaForCausalLM config whose chat template
    carries Llama Guard's category list."""
    named = marker_family(model_dir)
    if named is not None:
        return named == NAME
    config = model_dir / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (ValueError, OSError, AttributeError):
        return False
    return "LlamaForCausalLM" in architectures and folder_template(model_dir) is not None


def resolve_folder(path: Path, variant: str, entry: ModelEntry | None) -> ResolvedModel:
    if entry is None:
        name, (threshold, max_length) = path.name, get(NAME).defaults
    else:
        name = entry.name
        threshold = entry_threshold(entry)
        max_length = entry.max_length or get(NAME).max_length
    present = [v for v in present_variants(path) if v in ONNX_VARIANT_FILES]
    chosen = pick_variant(variant, present)
    if chosen is None and variant == "auto":
        chosen = TORCH_VARIANT  # no exported graph: run the checkpoint with torch
    if chosen is None:
        raise GuardError(
            f"{path} has no {variant} variant (found: {', '.join(present) or 'none'}).",
            hint="Use --variant auto to run the checkpoint with torch.",
        )
    graph = path if chosen == TORCH_VARIANT else path / ONNX_VARIANT_FILES[chosen]
    return ResolvedModel(name, NAME, path, chosen, graph, threshold, max_length)


def folder_variants(model_dir: Path) -> list[str]:
    """The exported graphs and the checkpoint (torch), when there."""
    present = onnx_graphs(model_dir)
    weights = [*model_dir.glob("*.safetensors"), *model_dir.glob("pytorch_model*.bin")]
    return present + ([TORCH_VARIANT] if weights else [])
