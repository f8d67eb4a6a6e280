"""Resolve a model name or folder to local files, without touching the network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .catalog import ONNX_VARIANT_FILES, VARIANTS, ModelEntry, get_entry
from .cpu import preferred_variants
from .errors import ExitCode, GuardError

VARIANT_CHOICES = ("auto", *VARIANTS)


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    family: str
    path: Path  # the model folder
    variant: str
    graph: Path  # the ONNX file of that variant
    threshold: float
    max_length: int


def present_variants(model_dir: Path) -> list[str]:
    return [v for v, rel in ONNX_VARIANT_FILES.items() if (model_dir / rel).exists()]


def pick_variant(requested: str, present: list[str]) -> str | None:
    if requested != "auto":
        return requested if requested in present else None
    return next((v for v in preferred_variants() if v in present), None)


def _local_defaults(model_dir: Path) -> tuple[str, float, int]:
    """A folder's family and defaults: its guardcli marker if any, else CSAM-Guard's."""
    entry = get_entry("csam-guard")
    name, threshold, max_length = model_dir.name, entry.threshold, entry.max_length
    marker = model_dir / "guardcli_synthetic.json"
    if marker.exists():
        name = json.loads(marker.read_text()).get("family", name)
    return name, threshold, max_length


def resolve(name_or_dir: str | Path, variant: str = "auto", *, cache_dir: str | None = None):
    """A catalog name (looked up in the Hugging Face cache, offline) or a model folder."""
    if variant not in VARIANT_CHOICES:
        raise GuardError(
            f"Unknown variant {variant!r}.",
            hint=f"Choose one of: {', '.join(VARIANT_CHOICES)}.",
            code=ExitCode.INPUT,
        )
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        name, threshold, max_length = _local_defaults(path)
        family = "seqcls"
        present = present_variants(path)
        chosen = pick_variant(variant, present)
        if chosen is None:
            raise GuardError(
                f"{path} has no {variant} variant (found: {', '.join(present) or 'none'}).",
                hint="Pick a variant that is there with --variant, or make it with "
                "`guard quantize`.",
            )
        return ResolvedModel(
            name, family, path, chosen, path / ONNX_VARIANT_FILES[chosen], threshold, max_length
        )
    if str(name_or_dir).startswith((".", "/", "~")) or "/" in str(name_or_dir):
        raise GuardError(
            f"Model folder {name_or_dir} does not exist.",
            hint="Pass an existing folder, or a catalog name (see `guard models`).",
        )
    entry = get_entry(str(name_or_dir))
    return _resolve_cached(entry, variant, cache_dir)


def _resolve_cached(entry: ModelEntry, variant: str, cache_dir: str | None) -> ResolvedModel:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    wanted = variant if variant != "auto" else preferred_variants()[0]
    try:
        snapshot = Path(snapshot_download(entry.repo, local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError):
        snapshot = None
    present = present_variants(snapshot) if snapshot else []
    chosen = pick_variant(variant, present)
    if snapshot is None or chosen is None or not (snapshot / "tokenizer.json").exists():
        raise GuardError(
            f"Model '{entry.name}' ({wanted}) is not in the cache.",
            hint=f"Run `guard fetch {entry.name} --variant {wanted}`, or pass --model DIR.",
        )
    return ResolvedModel(
        entry.name,
        entry.family,
        snapshot,
        chosen,
        snapshot / ONNX_VARIANT_FILES[chosen],
        entry.threshold,
        entry.max_length,
    )
