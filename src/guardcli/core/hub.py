"""Fetch a model's variant from the Hugging Face hub into its cache (only the files that
variant needs), and file a copied folder there for air-gapped machines (`guard fetch --from`)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from guardcli.core import registry
from guardcli.core.cache import (
    COMMIT,
    _matching,
    _relative_files,
    cached_snapshot,
    hub_cache_dir,
    repo_folder,
    variant_present,
)
from guardcli.core.catalog import (
    VARIANTS,
    ModelEntry,
    get_entry,
)
from guardcli.core.cpu import preferred_variants
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.synthetic import SYNTHETIC_MARKER

FETCH_CHOICES = ("auto", *VARIANTS, "all")
DEFAULT_ENDPOINT = "https://huggingface.co"


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
    result = _result(entry, variants, snapshot, patterns, imported_from=src)
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
