"""The one error type guardcli raises, and the exit codes it maps to."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit-code contract of every `guard` command."""

    OK = 0  # nothing flagged
    FLAGGED = 1  # at least one record flagged
    INPUT = 2  # usage or input error (bad option, bad record)
    MODEL = 3  # model or runtime error (missing model, failed session)


class GuardError(Exception):
    """A failure a user can act on: `message` says what went wrong, `hint` how to fix it."""

    def __init__(self, message: str, *, hint: str | None = None, code: ExitCode = ExitCode.MODEL):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


def input_error(message: str, hint: str | None = None) -> GuardError:
    return GuardError(message, hint=hint, code=ExitCode.INPUT)


def missing_extra(extra: str, what: str) -> GuardError:
    """The error for an optional dependency that is not installed."""
    return GuardError(
        f"{what} needs the optional '{extra}' dependencies, which are not installed.",
        hint=f"Install them with: pip install 'guardcli[{extra}]'",
        code=ExitCode.MODEL,
    )


def require_torch(what: str, *, peft: bool = False):
    """torch (with transformers, and peft when asked), or the 'export' extra's install hint."""
    try:
        import torch
        import transformers  # noqa: F401

        if peft:
            import peft as _peft  # noqa: F401
    except ImportError as exc:
        raise missing_extra("export", what) from exc
    return torch
