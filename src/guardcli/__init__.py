"""guardcli: run small open-weight safety classifiers from the shell and from Python."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import load_guard
    from .errors import GuardError
    from .verdict import Record, Verdict

__all__ = ["GuardError", "Record", "Verdict", "__version__", "load_guard"]


def __getattr__(name: str) -> Any:
    # Lazy: `import guardcli` (and `guard --help`) must not pull in onnxruntime.
    if name == "load_guard":
        from .api import load_guard

        return load_guard
    if name == "GuardError":
        from .errors import GuardError

        return GuardError
    if name in ("Record", "Verdict"):
        from . import verdict

        return getattr(verdict, name)
    raise AttributeError(name)
