"""The library entry point: `load_guard(name_or_dir, ...)` (implemented in families/loader.py)."""

from __future__ import annotations

from guardcli.core.spec import GuardSpec
from guardcli.families.loader import load_guard

__all__ = ["GuardSpec", "load_guard"]
