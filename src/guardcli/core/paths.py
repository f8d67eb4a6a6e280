"""Where guardcli keeps what it builds (converted tokenizers, synthetic models)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`GUARD_CACHE`, else `$XDG_CACHE_HOME/guardcli`, else `~/.cache/guardcli`."""
    if env := os.environ.get("GUARD_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "guardcli"


# Graphs guardcli rewrites (optimized, per-row INT8) go in this folder inside the graph's own
# folder when it is writable; resolve skips `.cache` paths.
CACHE_FOLDER = ".cache/guardcli"


def writable(folder: Path) -> bool:
    """Whether `folder` exists (made if need be) and can be written to."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)
