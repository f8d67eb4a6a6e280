"""Resolve a model name or folder to local files without touching the network, and fetch them.

Resolution reads the Hugging Face cache layout directly (`models--org--name/refs/REV` ->
`snapshots/COMMIT/...`), so a snapshot made by `guard fetch`, by `hf download` or by
`guard fetch --from DIR` (air-gapped import) resolves the same way, offline.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .backends import (
    ALL_VARIANTS,
    OPENVINO_SOURCES,
    OPENVINO_VARIANT_FILES,
    auto_order,
    backend_of,
    openvino_available,
    variant_file,
    with_backend,
)
from .catalog import (
    FAMILY_DEFAULTS,
    ONNX_VARIANT_FILES,
    VARIANTS,
    ModelEntry,
    check_count,
    get_entry,
    load_catalog,
)
from .cpu import preferred_variants
from .errors import ExitCode, GuardError, missing_extra
from .synthetic import SYNTHETIC_MARKER
from .thresholds import parse_threshold

# "lora": OpenCC's adapter + head run with torch on the base model.
LORA_VARIANT = "lora"
VARIANT_CHOICES = ("auto", *ALL_VARIANTS, LORA_VARIANT)
# What marks a local folder as a family other than the default ONNX sequence classifier.
OPENCC_MARKER = "weight_frame.json"
DIALOGUE_MARKER = "task_description.txt"
DIALOGUE_MAX_LENGTH = FAMILY_DEFAULTS["dialogue"][1]
FETCH_CHOICES = ("auto", *VARIANTS, "all")
DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    family: str
    path: Path  # the model folder
    variant: str
    graph: Path  # the ONNX file of that variant (an OpenVINO IR .xml for ov-int8)
    threshold: float
    max_length: int
    backend: str = "onnxruntime"  # onnxruntime | openvino


@dataclass(frozen=True)
class FetchResult:
    name: str
    repo: str
    variants: list[str]
    path: Path  # the snapshot folder
    files: list[str]  # the variant's files, relative to `path`
    total_bytes: int
    imported_from: Path | None = None
    synthetic: bool = False  # the imported folder is a random-weight model (`guard synth`)


# ---------------------------------------------------------------------------- the local cache


def hub_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """`--cache-dir`, else HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.

    Read from the environment at call time, as huggingface_hub does at import time."""
    if cache_dir:
        return Path(cache_dir).expanduser()
    if env := os.environ.get("HF_HUB_CACHE"):
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    )
    return Path(home).expanduser() / "hub"


def repo_folder(repo: str, cache_dir: str | Path | None = None) -> Path:
    return hub_cache_dir(cache_dir) / ("models--" + repo.replace("/", "--"))


def cached_snapshot(
    repo: str, revision: str | None = None, cache_dir: str | Path | None = None
) -> Path | None:
    """The cached snapshot folder of `repo` at `revision` (a ref such as main, or a commit)."""
    storage = repo_folder(repo, cache_dir)
    revision = revision or "main"
    commit = revision
    if not _COMMIT.match(revision):
        try:
            commit = (storage / "refs" / revision).read_text().strip()
        except OSError:
            return None
    snapshot = storage / "snapshots" / commit
    return snapshot if snapshot.is_dir() else None


def _relative_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and ".cache" not in p.relative_to(folder).parts
    )


def _matching(files: Iterable[str], patterns: Iterable[str]) -> list[str]:
    patterns = list(patterns)
    return [f for f in files if any(fnmatch.fnmatch(f, p) for p in patterns)]


def variant_present(entry: ModelEntry, variant: str, folder: Path, files: list[str]) -> bool:
    """A variant counts as present when its main file (its first pattern) and the files every
    variant requires are there."""
    main = entry.variants[variant][0]
    if not _matching(files, [main]):
        return False
    return all((folder / f).exists() for f in entry.required)


def cache_status(
    entry: ModelEntry, cache_dir: str | Path | None = None
) -> tuple[Path | None, dict[str, bool]]:
    """(snapshot folder or None, {variant: cached}) for the main ref."""
    snapshot = cached_snapshot(entry.repo, cache_dir=cache_dir)
    if snapshot is None:
        return None, {v: False for v in entry.variants}
    files = _relative_files(snapshot)
    return snapshot, {v: variant_present(entry, v, snapshot, files) for v in entry.variants}


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


def _local_defaults(model_dir: Path, family: str) -> tuple[str, float, int]:
    """A folder's name and defaults: its family's (never a catalog entry's, which models.toml
    may override), overridden by the `guardcli` entry that `guard export` writes into
    config.json, named by the synthetic marker if there is one."""
    threshold, max_length = FAMILY_DEFAULTS[family]
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
    """A folder's family from the files it holds: weight_frame.json (or an OpenCC
    train_config.json) -> opencc; a task description file -> dialogue; else seqcls."""
    if (model_dir / OPENCC_MARKER).exists():
        return "opencc"
    if (model_dir / DIALOGUE_MARKER).exists():
        return "dialogue"
    from .families.hf_seqcls.detect import is_hf_seqcls_folder

    if is_hf_seqcls_folder(model_dir):
        return "hf-seqcls"
    return "seqcls"


def _resolve_opencc(name: str, path: Path, variant: str) -> ResolvedModel:
    """lora (adapter + head on the base, run with torch), or an ONNX graph made by
    `guard export` (fp32; fp16/int8 when made from it). auto: lora, unless only the graph can
    run here (no adapter, no base, or no torch/peft installed)."""
    adapter = next(
        (
            path / n
            for n in ("adapter_model.safetensors", "adapter_model.bin")
            if (path / n).exists()
        ),
        path / "adapter_model.safetensors",
    )
    graphs = onnx_graphs(path)
    if variant == "auto" and graphs and not _opencc_torch_runs(path, adapter):
        variant = graphs[0]
    if variant in graphs:
        return ResolvedModel(
            name, "opencc", path, variant, path / ONNX_VARIANT_FILES[variant], 0.5, 512
        )
    if variant not in ("auto", LORA_VARIANT):
        raise GuardError(
            f"{path} is an OpenCC model, run with torch: it has no {variant} variant "
            f"(found: {', '.join([LORA_VARIANT, *graphs])}).",
            hint="Use --variant auto (or lora); `guard export DIR --out DIR` makes the fp32 "
            "graph for bases that export.",
            code=ExitCode.INPUT,
        )
    return ResolvedModel(name, "opencc", path, LORA_VARIANT, adapter, 0.5, 512)


def _opencc_torch_runs(path: Path, adapter: Path) -> bool:
    """Whether the torch path has what it needs: the adapter, the base, torch and peft."""
    import importlib.util

    from .families.opencc_frame import find_base, read_frame

    if not adapter.exists() or any(
        importlib.util.find_spec(m) is None for m in ("torch", "transformers", "peft")
    ):
        return False
    try:
        find_base(read_frame(path))
    except GuardError:
        return False
    return True


# Causal-LM guards: safetensors run with torch; an exported KV-cache graph (onnx/model.onnx,
# see convert.causal_onnx) runs with onnxruntime.
GENERATIVE_FAMILIES = ("qwen3guard-gen",)
GENERATIVE_MAX_LENGTH = FAMILY_DEFAULTS["qwen3guard-gen"][1]
TORCH_VARIANT = "torch"


def is_generative_folder(model_dir: Path) -> bool:
    """A Qwen3Guard-Gen folder: a guardcli marker naming the family, or a Qwen3ForCausalLM
    config whose chat template carries Qwen3Guard's safety policy."""
    marker = model_dir / "guardcli_synthetic.json"
    if marker.exists():
        return json.loads(marker.read_text()).get("family") in GENERATIVE_FAMILIES
    config = model_dir / "config.json"
    if not config.is_file():
        return False
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (ValueError, OSError):
        return False
    if "Qwen3ForCausalLM" not in architectures:
        return False
    from .families.qwen3guard_format import model_template

    return "Safety: Controversial" in model_template(model_dir)


def _resolve_generative(
    path: Path, name: str, variant: str, threshold: float, max_length: int
) -> ResolvedModel:
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
    return ResolvedModel(name, "qwen3guard-gen", path, chosen, graph, threshold, max_length)


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
    if path.is_dir() and is_generative_folder(path):
        threshold, max_length = FAMILY_DEFAULTS["qwen3guard-gen"]
        return _resolve_generative(path, path.name, variant, threshold, max_length)
    if path.is_dir():
        family = local_family(path)
        if family == "opencc":
            return _resolve_opencc(_local_defaults(path, family)[0], path, variant)
        name, threshold, max_length = _local_defaults(path, family)
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
        if not is_generative_folder(path):
            raise GuardError(f"{path} is not a generative guard; --endpoint needs one.")
        return ResolvedModel(path.name, "qwen3guard-gen", path, "remote", path, 0.5, 32768)
    entry = load_catalog().get(str(name_or_dir))
    if entry is None or entry.family not in GENERATIVE_FAMILIES:
        raise GuardError(
            f"--endpoint needs a generative guard, not {name_or_dir!r}.",
            hint="Pass --model qwen3guard-gen (or -4b, -8b) and --served-model NAME.",
            code=ExitCode.INPUT,
        )
    snapshot = cached_snapshot(entry.repo, cache_dir=cache_dir) or path
    threshold = entry.threshold if entry.threshold is not None else 0.5
    max_length = entry.max_length or GENERATIVE_MAX_LENGTH
    return ResolvedModel(
        entry.name, entry.family, snapshot, "remote", snapshot, threshold, max_length
    )


def _resolve_cached(
    entry: ModelEntry, variant: str, cache_dir: str | None, backend: str | None = None
) -> ResolvedModel:
    if entry.family == "opencc":
        snapshot = cached_snapshot(entry.repo, cache_dir=cache_dir)
        if snapshot is None or not (snapshot / OPENCC_MARKER).exists():
            raise GuardError(
                f"Model '{entry.name}' is not in the cache.",
                hint=f"Run `guard fetch {entry.name}`, or pass --model DIR.",
            )
        resolved = _resolve_opencc(entry.name, snapshot, variant)
        threshold = entry.threshold if entry.threshold is not None else 0.5
        return ResolvedModel(
            entry.name, "opencc", snapshot, resolved.variant, resolved.graph, threshold, 512
        )
    if entry.family in GENERATIVE_FAMILIES:
        snapshot = cached_snapshot(entry.repo, cache_dir=cache_dir)
        if snapshot is None:
            raise GuardError(
                f"Model '{entry.name}' is not in the cache.",
                hint=f"Run `guard fetch {entry.name}`, pass --model DIR, or use --endpoint URL "
                "for a served copy.",
            )
        return _resolve_generative(
            snapshot,
            entry.name,
            variant,
            entry.threshold if entry.threshold is not None else 0.5,
            entry.max_length or GENERATIVE_MAX_LENGTH,
        )
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
        entry.threshold if entry.threshold is not None else 0.5,
        entry.max_length or 512,
        backend_of(chosen),
    )


# ---------------------------------------------------------------------------- fetching


def fetch_variants(
    entry: ModelEntry, variant: str, available: list[str] | None = None
) -> list[str]:
    """The variants `guard fetch --variant V` means for this entry.

    `available` narrows auto and all to what a local folder holds (for --from)."""
    choices = list(entry.variants) if available is None else available
    if variant == "all":
        if not choices:
            raise GuardError(f"No variant of '{entry.name}' found.", code=ExitCode.MODEL)
        return choices
    if variant == "auto":
        ranked = [v for v in preferred_variants() if v in choices]
        if ranked:
            return ranked[:1]
        if choices:
            return choices[:1]
        raise GuardError(f"No variant of '{entry.name}' found.", code=ExitCode.MODEL)
    if variant not in entry.variants:
        raise GuardError(
            f"'{entry.name}' has no {variant!r} variant.",
            hint=f"Choose one of: auto, {', '.join(entry.variants)}, all.",
            code=ExitCode.INPUT,
        )
    return [variant]


def check_revision(revision: str | None) -> None:
    """A --revision names a branch, tag or commit: it becomes a file under the repo's refs/
    folder, so it must stay there (no absolute path, no '..', no empty or '.' part)."""
    if revision is None:
        return
    parts = revision.replace("\\", "/").split("/")
    if (
        not revision.strip()
        or revision.startswith(("/", "~"))
        or os.path.isabs(revision)
        or "\0" in revision
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise GuardError(
            f"--revision {revision!r} is not a branch, tag or commit name.",
            hint="Pass a name such as main, v1.0 or a 40-hex commit; it may not be empty, "
            "absolute, or contain '..', '.' or empty path parts.",
            code=ExitCode.INPUT,
        )


def _patterns(entry: ModelEntry, variants: list[str]) -> list[str]:
    patterns: list[str] = []
    for v in variants:
        patterns += [p for p in entry.variant_patterns(v) if p not in patterns]
    return patterns


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _result(entry, variants, snapshot: Path, patterns, imported_from=None) -> FetchResult:
    files = _matching(_relative_files(snapshot), patterns)
    missing = [v for v in variants if not _matching(files, [entry.variants[v][0]])]
    if missing:
        raise GuardError(
            f"{imported_from or entry.repo} has no files for the {', '.join(missing)} variant "
            f"(looked for {', '.join(entry.variants[missing[0]])}).",
            hint=f"See `guard models` for the files each variant of '{entry.name}' needs.",
        )
    total = sum((snapshot / f).stat().st_size for f in files)
    return FetchResult(entry.name, entry.repo, variants, snapshot, files, total, imported_from)


def fetch(
    name: str,
    variant: str = "auto",
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> FetchResult:
    """Download only the files a variant needs (its graph, external data, tokenizer, configs)
    into the Hugging Face cache. A dropped connection resumes with a range request; files
    already cached are not downloaded again."""
    entry = get_entry(name)
    check_revision(revision)
    variants = fetch_variants(entry, variant)
    patterns = _patterns(entry, variants)
    if _is_true(os.environ.get("HF_HUB_OFFLINE")):
        raise GuardError(
            f"HF_HUB_OFFLINE is set, so '{entry.name}' cannot be downloaded.",
            hint=f"Unset HF_HUB_OFFLINE to download from {endpoint()}, or copy the model folder "
            f"from a connected machine and run `guard fetch {entry.name} --from DIR`.",
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    silence = not progress and not are_progress_bars_disabled()
    if silence:
        disable_progress_bars()
    try:
        snapshot = snapshot_download(
            entry.repo,
            revision=revision,
            cache_dir=str(hub_cache_dir(cache_dir)),
            allow_patterns=patterns,
            endpoint=endpoint(),
        )
    except Exception as exc:
        raise _fetch_error(entry, revision, exc) from None
    finally:
        if silence:
            enable_progress_bars()
    return _result(entry, variants, Path(snapshot), patterns)


def _status_of(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None and getattr(response, "status_code", None):
            return int(response.status_code)
        seen = seen.__cause__ or seen.__context__
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in out:
        out.append(seen)
        seen = seen.__cause__ or seen.__context__
    return out


def _fetch_error(entry: ModelEntry, revision: str | None, exc: Exception) -> GuardError:
    from huggingface_hub.errors import (
        GatedRepoError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain = _chain(exc)
    status = _status_of(exc)
    url = f"{endpoint()}/{entry.repo}"
    if status in (401, 403) or any(isinstance(e, GatedRepoError) for e in chain):
        return GuardError(
            f"Access to {entry.repo} was refused ({status or 'gated'}): the repository is gated.",
            hint=f"Accept its conditions on the model page, {url}, while logged in; then run "
            "`hf auth login` or set HF_TOKEN to a token of that account, and retry.",
        )
    if any(isinstance(e, RevisionNotFoundError) for e in chain):
        return GuardError(
            f"{entry.repo} has no revision {revision!r}.",
            hint="Pass a branch, tag or commit that exists with --revision.",
        )
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return GuardError(
            f"{entry.repo} was not found on {endpoint()}.",
            hint="Check the repo in `guard models` (or your models.toml) and HF_ENDPOINT.",
        )
    if any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return GuardError(
            f"HF_HUB_OFFLINE is set, so '{entry.name}' cannot be downloaded.",
            hint=f"Unset HF_HUB_OFFLINE to download from {endpoint()}, or copy the model folder "
            f"from a connected machine and run `guard fetch {entry.name} --from DIR`.",
        )
    return GuardError(
        f"Could not download {entry.repo} from {endpoint()}: {type(exc).__name__}: {exc}",
        hint="Check the network, a proxy or HF_ENDPOINT and retry: finished files are kept and "
        f"partial ones resume. On an air-gapped host use `guard fetch {entry.name} --from DIR`.",
    )


# ---------------------------------------------------------------------------- air-gapped import


def _pseudo_commit(files: list[tuple[str, int]]) -> str:
    digest = hashlib.sha1(b"guardcli-import\n")
    for rel, size in files:
        digest.update(f"{rel}\0{size}\n".encode())
    return digest.hexdigest()


def _store_blob(src: Path, blobs: Path) -> Path:
    """Copy `src` into blobs/<sha256>, hashing as it copies; an identical blob is reused."""
    blobs.mkdir(parents=True, exist_ok=True)
    tmp = blobs / f".import-{os.getpid()}-{src.name}.incomplete"
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        while chunk := fin.read(1 << 22):
            digest.update(chunk)
            fout.write(chunk)
    blob = blobs / digest.hexdigest()
    if blob.exists():
        tmp.unlink()
    else:
        os.replace(tmp, blob)
    return blob


def import_folder(
    name: str,
    source: str | Path,
    variant: str = "auto",
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> FetchResult:
    """Copy a model folder (e.g. carried to an air-gapped host) into the Hugging Face cache layout,
    so `--model NAME` resolves it offline like a download.

    The snapshot is named by `revision` when it is a commit, else by the folder's name when that is
    a commit (a copied `snapshots/<commit>` folder), else by the snapshot the ref already points to,
    else by a hash of the file list. The ref (`revision`, default main) is pointed at it."""
    entry = get_entry(name)
    check_revision(revision)
    src = Path(source).expanduser()
    if not src.is_dir():
        raise GuardError(f"{src} is not a folder.", code=ExitCode.INPUT)
    _check_links(src)
    _check_layout(entry, src)
    files = _relative_files(src)
    available = [v for v in entry.variants if variant_present(entry, v, src, files)]
    if variant not in ("auto", "all") and variant in entry.variants and variant not in available:
        raise GuardError(
            f"{src} has no {variant} variant of '{entry.name}' "
            f"(found: {', '.join(available) or 'none'}).",
            hint=f"It needs {', '.join(entry.variants[variant])} and {', '.join(entry.required)}.",
        )
    variants = fetch_variants(entry, variant, available)
    patterns = _patterns(entry, variants)
    chosen = _matching(files, patterns)
    synthetic = SYNTHETIC_MARKER in files
    if synthetic:  # a random-weight model stays marked as one in the cache
        chosen.append(SYNTHETIC_MARKER)
    for rel in chosen:
        _check_inside(src, rel)
    ref = revision if revision and not _COMMIT.match(revision) else "main"
    storage = repo_folder(entry.repo, cache_dir)
    if revision and _COMMIT.match(revision):
        commit = revision
    elif _COMMIT.match(src.name):
        commit = src.name
    elif (existing := cached_snapshot(entry.repo, ref, cache_dir)) is not None:
        commit = existing.name
    else:
        commit = _pseudo_commit([(f, (src / f).stat().st_size) for f in chosen])
    snapshot = storage / "snapshots" / commit
    _check_under(storage, snapshot, "the snapshot")
    _check_under(storage, storage / "refs" / ref, f"--revision {ref!r}")
    if not synthetic and (snapshot / SYNTHETIC_MARKER).exists():
        (snapshot / SYNTHETIC_MARKER).unlink()  # real files replace a synthetic import
    for rel in chosen:
        blob = _store_blob(src / rel, storage / "blobs")
        target = snapshot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        try:
            target.symlink_to(os.path.relpath(blob, target.parent))
        except OSError:  # no symlinks (Windows without developer mode): a plain copy
            shutil.copyfile(blob, target)
    (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    result = _result(entry, variants, snapshot, patterns, imported_from=src)
    return dataclasses.replace(result, synthetic=synthetic)


def folder_family(folder: Path) -> str:
    """The family a model folder's layout says it is."""
    return GENERATIVE_FAMILIES[0] if is_generative_folder(folder) else local_family(folder)


def _check_layout(entry: ModelEntry, src: Path) -> None:
    """Refuse to file a folder of one family under a catalog entry of another."""
    found = folder_family(src)
    if found != entry.family:
        raise GuardError(
            f"{src} looks like a model folder of the {found} family, but '{entry.name}' is "
            f"of the {entry.family} family.",
            hint="Import it under an entry of its own family (see `guard models`; add one in "
            "models.toml), or pass the folder itself with --model DIR.",
            code=ExitCode.INPUT,
        )


def _check_links(src: Path) -> None:
    """Every link in the folder (to a file or a folder, wanted or not) stays inside it."""
    for parent, dirs, names in os.walk(src):  # links to folders are listed, not followed
        for name in [*dirs, *names]:
            path = Path(parent) / name
            if path.is_symlink():
                _check_inside(src, path.relative_to(src).as_posix(), file=False)


def _check_inside(src: Path, rel: str, *, file: bool = True) -> None:
    """A file to import must be a file inside `src`: a link out of it, or a dangling one, is
    refused by name (copy the folder with `cp -rL` to carry the files themselves)."""
    path = src / rel
    root = src.resolve()
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        points_to = os.readlink(path) if path.is_symlink() else "nothing"
        raise GuardError(
            f"{path} is a dangling link (it points to {points_to}).",
            hint="Copy the real file into the folder, or remove the link.",
            code=ExitCode.INPUT,
        ) from None
    if not target.is_relative_to(root):
        raise GuardError(
            f"{path} is a link to {target}, outside {src}: refused.",
            hint="Import only files inside the folder: copy it with `cp -rL` (following links) "
            "and import the copy.",
            code=ExitCode.INPUT,
        )
    if file and not target.is_file():
        raise GuardError(f"{path} is not a file.", code=ExitCode.INPUT)


def _check_under(root: Path, path: Path, what: str) -> None:
    """Nothing is written outside the cache's folder for the repo."""
    base = os.path.realpath(root)
    if os.path.commonpath([base, os.path.realpath(path)]) != base:
        raise GuardError(f"{what} would write outside {root}: refused.", code=ExitCode.INPUT)
