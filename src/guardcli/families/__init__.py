"""Model families: one package per family, each describing itself with `FAMILY = Family(...)`
(see guardcli.core.registry, which finds them and third-party ones the same way)."""

from __future__ import annotations

from guardcli.core import registry
from guardcli.families.base import Guard

_FAMILIES: dict[str, type[Guard]] = {}


def register_family(cls: type[Guard]) -> type[Guard]:
    """Record a Guard class by its family name (the registry's `guard` reference finds it)."""
    _FAMILIES[cls.family] = cls
    return cls


def get_family(name: str) -> type[Guard]:
    """The Guard class of the family `name` (a GuardError names the known ones)."""
    return registry.get(name).guard_class()


__all__ = ["Guard", "get_family", "register_family"]
