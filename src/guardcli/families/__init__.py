"""Model families. Each registers its Guard subclass here, the way a plugin would."""

from __future__ import annotations

from ..errors import GuardError
from .base import Guard

_FAMILIES: dict[str, type[Guard]] = {}


def register_family(cls: type[Guard]) -> type[Guard]:
    _FAMILIES[cls.family] = cls
    return cls


def get_family(name: str) -> type[Guard]:
    if name not in _FAMILIES:
        from . import qwen3guard, seqcls  # noqa: F401  (they register themselves)
    try:
        return _FAMILIES[name]
    except KeyError:
        raise GuardError(f"No model family {name!r} (known: {', '.join(_FAMILIES)}).") from None


__all__ = ["Guard", "get_family", "register_family"]
