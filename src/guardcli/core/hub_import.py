"""File a copied model folder into the Hugging Face cache layout (`guard fetch --from`), for
air-gapped machines: every file checked to lie inside the folder, stored by content hash."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from pathlib import Path

from guardcli.core import registry
from guardcli.core.cache import (
    COMMIT,
    _matching,
    _relative_files,
    cached_snapshot,
    repo_folder,
    variant_present,
)
from guardcli.core.catalog import ModelEntry, get_entry
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.fetch_plan import (
    FetchResult,
    check_revision,
    fetch_result,
    fetch_variants,
    variant_patterns,
)
from guardcli.core.synthetic import SYNTHETIC_MARKER


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
    patterns = variant_patterns(entry, variants)
    chosen = _matching(files, patterns)
    synthetic = SYNTHETIC_MARKER in files
    if synthetic:  # a random-weight model stays marked as one in the cache
        chosen.append(SYNTHETIC_MARKER)
    for rel in chosen:
        _check_inside(src, rel)
    ref = revision if revision and not COMMIT.match(revision) else "main"
    storage = repo_folder(entry.repo, cache_dir)
    if revision and COMMIT.match(revision):
        commit = revision
    elif COMMIT.match(src.name):
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
    result = fetch_result(entry, variants, snapshot, patterns, imported_from=src)
    return dataclasses.replace(result, synthetic=synthetic)


def folder_family(folder: Path) -> str:
    """The family a model folder's layout says it is."""
    return registry.folder_family(folder).name


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
