"""What a fetch or an import of a model's variants takes: which variants `--variant` means, the
file patterns they need, a safe `--revision`, and the FetchResult both hub.py (download) and
hub_import.py (a copied folder, air-gapped) return."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from guardcli.core.cache import _matching, _relative_files
from guardcli.core.catalog import VARIANTS, ModelEntry
from guardcli.core.cpu import preferred_variants
from guardcli.core.errors import ExitCode, GuardError

FETCH_CHOICES = ("auto", *VARIANTS, "all")


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
    # A checkpoint whose ONNX variants are still to be made (ModelEntry.checkpoint).
    needs_export: bool = False


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


def variant_patterns(entry: ModelEntry, variants: list[str]) -> list[str]:
    patterns: list[str] = []
    for v in variants:
        patterns += [p for p in entry.variant_patterns(v) if p not in patterns]
    return patterns


def fetch_result(entry, variants, snapshot: Path, patterns, imported_from=None) -> FetchResult:
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
