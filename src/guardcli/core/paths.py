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
