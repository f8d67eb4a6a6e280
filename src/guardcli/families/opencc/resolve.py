"""Which OpenCC variant runs: lora (adapter + head on the base, with torch), or an ONNX graph
made by `guard export` (fp32; fp16/int8 when made from it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from guardcli.core.catalog import ONNX_VARIANT_FILES, ModelEntry
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.registry import get
from guardcli.core.resolve import ResolvedModel, entry_threshold, local_defaults, onnx_graphs
from guardcli.core.variants import LORA_VARIANT
from guardcli.families.opencc.frame import find_base, read_frame

NAME = "opencc"


def resolve_folder(path: Path, variant: str, entry: ModelEntry | None) -> ResolvedModel:
    """auto: lora, unless only the graph can run here (no adapter, no base, or no torch/peft
    installed). A catalog entry's threshold applies; the max length is the family's."""
    threshold, max_length = get(NAME).defaults
    if entry is None:
        name = local_defaults(path, NAME)[0]
    else:
        name, threshold = entry.name, entry_threshold(entry)
    adapter = next(
        (
            path / n
            for n in ("adapter_model.safetensors", "adapter_model.bin")
            if (path / n).exists()
        ),
        path / "adapter_model.safetensors",
    )
    graphs = onnx_graphs(path)
    if variant == "auto" and graphs and not _torch_runs(path, adapter):
        variant = graphs[0]
    if variant in graphs:
        graph = path / ONNX_VARIANT_FILES[variant]
        return ResolvedModel(name, NAME, path, variant, graph, threshold, max_length)
    if variant not in ("auto", LORA_VARIANT):
        raise GuardError(
            f"{path} is an OpenCC model, run with torch: it has no {variant} variant "
            f"(found: {', '.join([LORA_VARIANT, *graphs])}).",
            hint="Use --variant auto (or lora); `guard export DIR --out DIR` makes the fp32 "
            "graph for bases that export.",
            code=ExitCode.INPUT,
        )
    return ResolvedModel(name, NAME, path, LORA_VARIANT, adapter, threshold, max_length)


def _torch_runs(path: Path, adapter: Path) -> bool:
    """Whether the torch path has what it needs: the adapter, the base, torch and peft."""
    if not adapter.exists() or any(
        importlib.util.find_spec(m) is None for m in ("torch", "transformers", "peft")
    ):
        return False
    try:
        find_base(read_frame(path))
    except GuardError:
        return False
    return True


def folder_variants(model_dir: Path) -> list[str]:
    """The exported graph (fp32, and variants made from it) beside the adapter, when there."""
    lora = [LORA_VARIANT] if any(model_dir.glob("adapter_model.*")) else []
    return onnx_graphs(model_dir) + lora
