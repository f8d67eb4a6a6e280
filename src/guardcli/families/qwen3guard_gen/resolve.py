"""Which Qwen3Guard-Gen folder this is and which variant runs: an exported KV-cache graph
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
from guardcli.families.qwen3guard_gen.format import model_template

NAME = "qwen3guard-gen"


def is_qwen3guard_folder(model_dir: Path) -> bool:
    """A guardcli marker naming the family, or a Qwen3ForCausalLM config whose chat template
    carries Qwen3Guard's safety policy."""
    named = marker_family(model_dir)
    if named is not None:
        return named == NAME
    config = model_dir / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (ValueError, OSError):
        return False
    if "Qwen3ForCausalLM" not in architectures:
        return False
    return "Safety: Controversial" in model_template(model_dir)


def resolve_folder(path: Path, variant: str, entry: ModelEntry | None) -> ResolvedModel:
    if entry is None:
        name, (threshold, max_length) = path.name, get(NAME).defaults
    else:
        name = entry.name
        threshold = entry_threshold(entry)
        max_length = entry.max_length or get(NAME).max_length
    # The causal graph runs on onnxruntime only (OpenVINO variants do not apply).
    present = [v for v in present_variants(path) if v in ONNX_VARIANT_FILES]
    chosen = pick_variant(variant, present)
    if chosen is None and variant == "auto":
        chosen = TORCH_VARIANT  # no exported graph: run the checkpoint with torch
    if chosen is None:
        raise GuardError(
            f"{path} has no {variant} variant (found: {', '.join(present) or 'none'}).",
            hint="Use --variant auto to run the checkpoint with torch.",
        )
    # The torch variant has no graph: `graph` is the folder itself.
    graph = path if chosen == TORCH_VARIANT else path / ONNX_VARIANT_FILES[chosen]
    return ResolvedModel(name, NAME, path, chosen, graph, threshold, max_length)


def folder_variants(model_dir: Path) -> list[str]:
    """The exported graph and the checkpoint (torch), when there."""
    present = onnx_graphs(model_dir)
    weights = [*model_dir.glob("*.safetensors"), *model_dir.glob("pytorch_model*.bin")]
    return present + ([TORCH_VARIANT] if weights else [])
