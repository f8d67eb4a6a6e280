"""Fetch a model's variant from the Hugging Face hub into its cache (only the files that
variant needs). Filing a copied folder there for air-gapped machines (`guard fetch --from`) is
core.hub_import; what a variant's fetch takes is core.fetch_plan (both importable from here)."""

from __future__ import annotations

import os
from pathlib import Path

from guardcli.core.cache import _matching, hub_cache_dir
from guardcli.core.cache import _relative_files as files_of
from guardcli.core.catalog import ModelEntry, get_entry
from guardcli.core.errors import GuardError
from guardcli.core.fetch_plan import (  # noqa: F401 - importable from here
    FETCH_CHOICES,
    FetchResult,
    check_revision,
    fetch_result,
    fetch_variants,
    variant_patterns,
)
from guardcli.core.hub_import import folder_family, import_folder  # noqa: F401
from guardcli.core.model_entry import CHECKPOINT_FILES

DEFAULT_ENDPOINT = "https://huggingface.co"


def _is_true(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


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
    patterns = list(CHECKPOINT_FILES) if entry.checkpoint else variant_patterns(entry, variants)
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
    if entry.checkpoint:
        return checkpoint_result(entry, variants, Path(snapshot))
    return fetch_result(entry, variants, Path(snapshot), patterns)


def checkpoint_result(entry: ModelEntry, variants: list[str], snapshot: Path) -> FetchResult:
    """A downloaded checkpoint: the variants it still needs exported (none when an earlier
    fetch made them), or a GuardError when the repo holds no weights to export."""
    present = files_of(snapshot)
    files = _matching(present, CHECKPOINT_FILES)
    if not any(f.endswith(".safetensors") for f in files) or "config.json" not in files:
        raise GuardError(
            f"{entry.repo} has no transformers checkpoint to export (config.json and "
            "model.safetensors).",
            hint="Export a local copy yourself: `guard export SRC --out DIR`, then "
            f"`guard fetch {entry.name} --from DIR`.",
        )
    patterns = variant_patterns(entry, variants)
    missing = [v for v in variants if not _matching(present, [entry.variants[v][0]])]
    if not missing:
        return fetch_result(entry, variants, snapshot, patterns)
    total = sum((snapshot / f).stat().st_size for f in files)
    return FetchResult(entry.name, entry.repo, variants, snapshot, files, total, needs_export=True)


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
