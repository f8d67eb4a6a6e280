"""The library entry point: `load_guard(name_or_dir, ...)` (implemented in families/loader.py)."""

from __future__ import annotations

from guardcli.families.loader import load_guard

__all__ = ["load_guard"]
