"""Model families. Each registers its Guard subclass here, the way a plugin would."""

from __future__ import annotations

import importlib

from ..errors import GuardError
from .base import Guard

_FAMILIES: dict[str, type[Guard]] = {}
# Modules that register a family when imported (lazily: some need torch at run time).
FAMILY_MODULES = ("seqcls", "opencc", "dialogue", "qwen3guard", "hf_seqcls.guard")


def register_family(cls: type[Guard]) -> type[Guard]:
    _FAMILIES[cls.family] = cls
    return cls


def get_family(name: str) -> type[Guard]:
    if name not in _FAMILIES:
        for module in FAMILY_MODULES:
            importlib.import_module(f".{module}", __name__)
    try:
        return _FAMILIES[name]
    except KeyError:
        raise GuardError(f"No model family {name!r} (known: {', '.join(_FAMILIES)}).") from None


__all__ = ["Guard", "get_family", "register_family"]
