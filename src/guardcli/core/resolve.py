"""Resolve a model name or folder to local files without touching the network.

Resolution reads the Hugging Face cache layout directly (`models--org--name/refs/REV` ->
`snapshots/COMMIT/...`), so a snapshot made by `guard fetch`, by `hf download` or by
`guard fetch --from DIR` (air-gapped import) resolves the same way, offline.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from guardcli.core import registry
from guardcli.core.cache import (
    cache_status,
    cached_snapshot,
)
from guardcli.core.catalog import (
    ONNX_VARIANT_FILES,
    ModelEntry,
    check_count,
    get_entry,
    load_catalog,
)
from guardcli.core.errors import ExitCode, GuardError, missing_extra
from guardcli.core.synthetic import SYNTHETIC_MARKER
from guardcli.core.thresholds import parse_threshold
from guardcli.core.variants import (
    ALL_VARIANTS,
    GGUF_VARIANT_FILES,
    GGUF_VARIANTS,
    LLAMACPP,
    LORA_VARIANT,
    OPENVINO_SOURCES,
    OPENVINO_VARIANT_FILES,
    TORCH_VARIANT,
    auto_order,
    backend_of,
    llamacpp_available,
    openvino_available,
    variant_file,
    with_backend,
)

VARIANT_CHOICES = ("auto", *ALL_VARIANTS, LORA_VARIANT, *GGUF_VARIANTS)


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    family: str
    path: Path  # the model folder
    variant: str
    graph: Path  # the ONNX file of that variant (an OpenVINO IR .xml for ov-int8)
    threshold: float
    max_length: int
    backend: str = "onnxruntime"  # onnxruntime | openvino | llamacpp


# ---------------------------------------------------------------------------- resolution


def onnx_graphs(model_dir: Path) -> list[str]:
    """The ONNX variants (fp32, fp16, int8) whose graph files a folder holds."""
    return [v for v, rel in ONNX_VARIANT_FILES.items() if (model_dir / rel).is_file()]


def present_variants(model_dir: Path) -> list[str]:
    """The variants a folder holds that this install can run (OpenVINO ones need openvino)."""
    present = onnx_graphs(model_dir)
    if openvino_available():
        present += [v for v, rel in OPENVINO_VARIANT_FILES.items() if (model_dir / rel).exists()]
    return present


def pick_variant(requested: str, present: list[str], backend: str | None = None) -> str | None:
    if requested != "auto":
        return requested if requested in present else None
    return next((v for v in auto_order(backend) if v in present), None)


def _missing_hint(variant: str) -> str:
    if variant == "ov-int8":
        return "Make it with `guard quantize DIR --backend openvino`, or pick another --variant."
    if backend_of(variant) == "openvino" and not openvino_available():
        return "OpenVINO variants need the openvino extra: pip install 'guardcli[openvino]'."
    return "Pick a variant that is there with --variant, or make it with `guard quantize`."


def entry_threshold(entry: ModelEntry) -> float:
    """A catalog entry's threshold, else its family's."""
    return entry.threshold if entry.threshold is not None else registry.get(entry.family).threshold


def entry_settings(family: str, path: Path, entry: ModelEntry | None) -> tuple[str, float, int]:
    """(name, threshold, max_length) of a folder: its catalog entry's, else its family's."""
    if entry is None:
        return path.name, *registry.get(family).defaults
    max_length = entry.max_length or registry.get(family).max_length
    return entry.name, entry_threshold(entry), max_length


def config_architectures(model_dir: Path) -> list[str] | None:
    """config.json's `architectures` (None: no readable config)."""
    config = model_dir / "config.json"
    try:
        return list(json.loads(config.read_text(encoding="utf-8")).get("architectures") or [])
    except (ValueError, OSError, AttributeError, TypeError):
        return None


def resolve_causal(family: str, path: Path, variant: str, entry: ModelEntry | None):
    """A generative guard's folder: an exported KV-cache graph on onnxruntime (OpenVINO's
    variants do not apply), else (`auto`) the checkpoint with torch, whose `graph` is the
    folder itself."""
    name, threshold, max_length = entry_settings(family, path, entry)
    if variant in GGUF_VARIANTS:  # llama.cpp's file (runtime.gguf_export)
        gguf = path / GGUF_VARIANT_FILES[variant]
        if not gguf.is_file():
            raise GuardError(
                f"{path} has no {variant} variant ({GGUF_VARIANT_FILES[variant]}).",
                hint=f"Make it with `guard quantize {path} --to {variant}`.",
                code=ExitCode.INPUT,
            )
        return ResolvedModel(name, family, path, variant, gguf, threshold, max_length, LLAMACPP)
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
    return ResolvedModel(name, family, path, chosen, graph, threshold, max_length)


def checkpoint_variants(model_dir: Path) -> list[str]:
    """The exported graphs, the checkpoint (torch) and, with llama_cpp installed, the GGUF
    files, when there."""
    weights = [*model_dir.glob("*.safetensors"), *model_dir.glob("pytorch_model*.bin")]
    gguf = [v for v in gguf_files(model_dir) if llamacpp_available()]
    return onnx_graphs(model_dir) + ([TORCH_VARIANT] if weights else []) + gguf


def gguf_files(model_dir: Path) -> list[str]:
    """The GGUF variants a folder holds, Q8_0 first."""
    return [v for v in GGUF_VARIANTS if (model_dir / GGUF_VARIANT_FILES[v]).is_file()]


def local_defaults(model_dir: Path, family: str) -> tuple[str, float, int]:
    """A folder's name and defaults: its family's (never a catalog entry's, which models.toml
    may override), overridden by the `guardcli` entry that `guard export` writes into
    config.json, named by the synthetic marker if there is one."""
    threshold, max_length = registry.get(family).defaults
    name = model_dir.name
    marker = model_dir / SYNTHETIC_MARKER
    if marker.exists():
        name = json.loads(marker.read_text()).get("family", name)
    config = model_dir / "config.json"
    if config.exists():
        ours = json.loads(config.read_text(encoding="utf-8")).get("guardcli") or {}
        where = f"{config}: guardcli"
        if ours.get("threshold") is not None:
            threshold = parse_threshold(ours["threshold"], f"{where}.threshold", ExitCode.MODEL)
        if ours.get("max_length") is not None:
            max_length = check_count(ours["max_length"], f"{where}.max_length", ExitCode.MODEL)
    return name, threshold, max_length


def local_family(model_dir: Path) -> str:
    """A folder's family, from the files it holds (each family's marker or detector)."""
    return registry.folder_family(model_dir).name


def is_generative_folder(model_dir: Path) -> bool:
    """Whether a folder holds a generative guard (one that can also run on an endpoint)."""
    return registry.folder_family(model_dir).generative


def _check_variant(variant: str) -> None:
    if variant not in VARIANT_CHOICES:
        raise GuardError(
            f"Unknown variant {variant!r}.",
            hint=f"Choose one of: {', '.join(VARIANT_CHOICES)}.",
            code=ExitCode.INPUT,
        )


def resolve(
    name_or_dir: str | Path,
    variant: str = "auto",
    *,
    cache_dir: str | None = None,
    backend: str | None = None,
):
    """A catalog name (looked up in the Hugging Face cache, offline) or a model folder.

    `backend` (onnxruntime|openvino, None for the variant's own) maps a variant to its path on
    that runtime: `--backend openvino --variant int8` is ov-int8."""
    _check_variant(variant)
    variant = with_backend(variant, backend)
    if "openvino" in (backend, backend_of(variant)) and not openvino_available():
        raise missing_extra("openvino", f"The {variant} variant on OpenVINO")
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        _note_shadowing(str(name_or_dir), path)
    if path.is_dir():
        described = registry.folder_family(path)
        if described.resolve is not None:
            return registry.load(described.resolve)(path, variant, None)
        family = described.name
        name, threshold, max_length = local_defaults(path, family)
        present = present_variants(path)
        chosen = pick_variant(variant, present, backend)
        if chosen is None:
            what = variant if backend is None else f"{variant} {backend}"
            # ov-fp32 and bf16 come with fp32's file: name only the variants with files.
            found = ", ".join(v for v in present if v not in OPENVINO_SOURCES) or "none"
            raise GuardError(
                f"{path} has no {what} variant (found: {found}).",
                hint=_missing_hint(variant),
            )
        return ResolvedModel(
            name,
            family,
            path,
            chosen,
            path / variant_file(chosen),
            threshold,
            max_length,
            backend_of(chosen),
        )
    if str(name_or_dir).startswith((".", "/", "~")) or "/" in str(name_or_dir):
        raise GuardError(
            f"Model folder {name_or_dir} does not exist.",
            hint="Pass an existing folder, or a catalog name (see `guard models`).",
        )
    entry = get_entry(str(name_or_dir))
    return _resolve_cached(entry, variant, cache_dir, backend)


def _note_shadowing(name: str, path: Path) -> None:
    """`-m csam-guard` with a ./csam-guard folder here: the folder wins; say so, on stderr."""
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        return  # written as a path: no ambiguity
    try:
        known = name in load_catalog()
    except GuardError:
        return
    if known:
        print(
            f"note: using the folder {path.absolute()}, not the catalog model '{name}' "
            f"(pass --model ./{name} to silence this, or run from another folder).",
            file=sys.stderr,
        )


def _cached_openvino(entry: ModelEntry, snapshot: Path | None, status: dict[str, bool]):
    """OpenVINO variants of a cached entry: those on its FP32 file, and an ov-int8 made in it."""
    if snapshot is None or not openvino_available():
        return {}
    found = {v: status.get(src, False) for v, src in OPENVINO_SOURCES.items()}
    found["ov-int8"] = (snapshot / OPENVINO_VARIANT_FILES["ov-int8"]).exists()
    return found


def remote_model(name_or_dir: str | Path, *, cache_dir: str | None = None) -> ResolvedModel:
    """The model behind `--endpoint`: a catalog name or a folder (for its tokenizer, when
    cached), else a bare name of the qwen3guard-gen family. Nothing needs to be downloaded."""
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        found = registry.folder_family(path)
        if not found.generative:
            raise GuardError(f"{path} is not a generative guard; --endpoint needs one.")
        return ResolvedModel(path.name, found.name, path, "remote", path, *found.defaults)
    entry = load_catalog().get(str(name_or_dir))
    if entry is None or not registry.get(entry.family).generative:
        raise GuardError(
            f"--endpoint needs a generative guard, not {name_or_dir!r}.",
            hint="Pass --model qwen3guard-gen (or -4b, -8b) and --served-model NAME.",
            code=ExitCode.INPUT,
        )
    snapshot = cached_snapshot(entry.repo, cache_dir=cache_dir) or path
    threshold = entry_threshold(entry)
    max_length = entry.max_length or registry.get(entry.family).max_length
    return ResolvedModel(
        entry.name, entry.family, snapshot, "remote", snapshot, threshold, max_length
    )


def _resolve_cached(
    entry: ModelEntry, variant: str, cache_dir: str | None, backend: str | None = None
) -> ResolvedModel:
    family = registry.get(entry.family)
    if family.resolve is not None:
        snapshot = cached_snapshot(entry.repo, cache_dir=cache_dir)
        if snapshot is None or (family.marker and not (snapshot / family.marker).exists()):
            raise GuardError(
                f"Model '{entry.name}' is not in the cache.",
                hint=family.uncached_hint.format(name=entry.name),
            )
        return registry.load(family.resolve)(snapshot, variant, entry)
    if not entry.runs_onnx:
        raise GuardError(
            f"Model '{entry.name}' (family {entry.family}) can be fetched but this version of "
            "guardcli cannot run it yet.",
            hint="Use an ONNX sequence classifier such as csam-guard.",
        )
    wanted = variant if variant != "auto" else (auto_order(backend) or ["fp32"])[0]
    snapshot, status = cache_status(entry, cache_dir)
    status = {**status, **_cached_openvino(entry, snapshot, status)}
    present = [v for v in ALL_VARIANTS if status.get(v)]
    chosen = pick_variant(variant, present, backend)
    if snapshot is None or chosen is None:
        if wanted == "ov-int8" and snapshot is not None:
            hint = f"Run `guard quantize {snapshot} --backend openvino`, or pass --model DIR."
        else:
            fetchable = OPENVINO_SOURCES.get(wanted, wanted)
            hint = f"Run `guard fetch {entry.name} --variant {fetchable}`, or pass --model DIR."
        raise GuardError(f"Model '{entry.name}' ({wanted}) is not in the cache.", hint=hint)
    if chosen in OPENVINO_VARIANT_FILES:
        source = OPENVINO_SOURCES.get(chosen)
        graph = snapshot / (entry.variants[source][0] if source else variant_file(chosen))
    else:
        graph = snapshot / entry.variants[chosen][0]
    return ResolvedModel(
        entry.name,
        entry.family,
        snapshot,
        chosen,
        graph,
        entry_threshold(entry),
        entry.max_length or family.entry_max_length or family.max_length,
        backend_of(chosen),
    )
