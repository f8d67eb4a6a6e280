"""The local Hugging Face cache, read directly (`models--org--name/refs/REV` ->
`snapshots/COMMIT/...`), so a snapshot made by `guard fetch`, by `hf download` or by
`guard fetch --from DIR` (air-gapped import) is found the same way, offline."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable
from pathlib import Path

from guardcli.core.catalog import ModelEntry

# A full commit hash, as opposed to a ref such as main.
COMMIT = re.compile(r"^[0-9a-f]{40}$")


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
    if not COMMIT.match(revision):
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
