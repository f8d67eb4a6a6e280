"""guardcli: run small open-weight safety classifiers from the shell and from Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.5.0"

if TYPE_CHECKING:
    from guardcli.core.errors import GuardError
    from guardcli.core.verdicts import Record, Verdict
    from guardcli.families.loader import load_guard

__all__ = ["GuardError", "Record", "Verdict", "__version__", "load_guard"]


def __getattr__(name: str) -> Any:
    # Lazy: `import guardcli` (and `guard --help`) must not pull in onnxruntime.
    if name == "load_guard":
        from guardcli.families.loader import load_guard

        return load_guard
    if name == "GuardError":
        from guardcli.core.errors import GuardError

        return GuardError
    if name in ("Record", "Verdict"):
        from guardcli.core import verdicts as verdict

        return getattr(verdict, name)
    raise AttributeError(name)
