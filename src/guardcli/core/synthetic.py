"""The synthetic marker: the file that says a folder holds a random-weight model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guardcli.core.errors import ExitCode, GuardError

SIZES = ("tiny", "full")
SYNTHETIC_MARKER = "guardcli_synthetic.json"


RANDOM_WEIGHTS_NOTE = "random weights: verdicts are meaningless; for tests and benchmarks only"


def write_marker(
    out: Path, family: str, *, size: str, seed: int, note: str = RANDOM_WEIGHTS_NOTE, **extra: Any
) -> None:
    """The file that tells every command (and a person) that a folder is synthetic."""
    marker = {"family": family, "size": size, "seed": seed, **extra, "note": note}
    (Path(out) / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def check_out(out: Path, *, force: bool = False) -> None:
    """Refuse to write a model into a non-empty folder (an existing model, or anything else)
    unless `force`: a synthetic model must never silently replace a real one."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GuardError(f"--out {out} is a file, not a folder.", code=ExitCode.INPUT)
    if not force and out.is_dir() and any(out.iterdir()):
        what = "a synthetic model" if is_synthetic(out) else "files"
        raise GuardError(
            f"--out {out} already holds {what}; nothing was written.",
            hint="Pass --force to write over it, or choose an empty or new folder.",
            code=ExitCode.INPUT,
        )


def is_synthetic(model_dir: Path) -> bool:
    return (Path(model_dir) / SYNTHETIC_MARKER).exists()
