"""Which Qwen3Guard-Stream folder this is and which variant runs: INT8 or FP32 ONNX with KV
cache on onnxruntime (export.py), else the torch reference on the safetensors."""

from __future__ import annotations

import json
from pathlib import Path

from guardcli.core.catalog import ModelEntry
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.registry import marker_family
from guardcli.core.resolve import ResolvedModel, entry_settings
from guardcli.core.variants import TORCH_VARIANT
from guardcli.families.qwen3guard_stream.export import FP16_GRAPH, FP32_GRAPH, INT8_GRAPH
from guardcli.families.qwen3guard_stream.reference import read_config

NAME = "qwen3guard-stream"
ARCHITECTURE = "Qwen3ForGuardModel"
# What `--variant auto` tries, in order (the torch reference when no graph is there). FP16 comes
# last: onnxruntime has no x86 FP16 GEMM, so it is no faster than FP32 on a CPU.
GRAPHS = {"int8": INT8_GRAPH, "fp32": FP32_GRAPH, "fp16": FP16_GRAPH}
STREAM_VARIANTS = ("auto", *GRAPHS, TORCH_VARIANT)


def is_stream_folder(model_dir: Path) -> bool:
    """A guardcli marker naming the family, or a config whose architecture is the authors'
    Qwen3ForGuardModel."""
    named = marker_family(model_dir)
    if named is not None:
        return named == NAME
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return False
    return isinstance(config, dict) and ARCHITECTURE in (config.get("architectures") or [])


def check_variant(variant: str) -> None:
    if variant not in STREAM_VARIANTS:
        raise GuardError(
            f"Unknown --variant {variant!r} for a stream.",
            hint=f"Choose one of: {', '.join(STREAM_VARIANTS)}.",
            code=ExitCode.INPUT,
        )


def folder_variants(model_dir: Path) -> list[str]:
    """The exported graphs and the checkpoint (torch), when there."""
    present = [v for v, rel in GRAPHS.items() if (model_dir / rel).is_file()]
    return present + ([TORCH_VARIANT] if any(model_dir.glob("*.safetensors")) else [])


def resolve_folder(path: Path, variant: str, entry: ModelEntry | None) -> ResolvedModel:
    """`auto` picks INT8, then FP32, then FP16 ONNX, then the torch reference on the
    checkpoint."""
    check_variant(variant)
    read_config(path)
    if variant == "auto":
        variant = next((v for v, g in GRAPHS.items() if (path / g).is_file()), TORCH_VARIANT)
    if variant in GRAPHS and not (path / GRAPHS[variant]).is_file():
        raise GuardError(
            f"{path} has no {variant} graph ({GRAPHS[variant]}).",
            hint="Pick another --variant (torch runs the checkpoint).",
            code=ExitCode.MODEL,
        )
    name, threshold, max_length = entry_settings(NAME, path, entry)
    # The torch variant has no graph: `graph` is the folder itself.
    graph = path / GRAPHS[variant] if variant in GRAPHS else path
    return ResolvedModel(name, NAME, path, variant, graph, threshold, max_length)
