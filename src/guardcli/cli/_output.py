"""Consoles and the one place library errors become messages and exit codes."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import ExitCode, GuardError

F = TypeVar("F", bound=Callable[..., Any])


def stderr() -> Console:
    """People's console: logs, hints, progress. stdout carries data only."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def debug() -> bool:
    return os.environ.get("GUARD_DEBUG", "") not in ("", "0")


def fail(message: str, hint: str | None = None, code: ExitCode = ExitCode.INPUT) -> typer.Exit:
    console = stderr()
    # escape: a message may hold brackets ("[models.x] needs repo") that are not markup
    console.print(f"[bold red]Error:[/] {escape(message)}", markup=True, highlight=False)
    if hint:
        console.print(hint, markup=False)
    return typer.Exit(int(code))


def handle_errors(fn: F) -> F:
    """Map GuardError (and anything unexpected) to a message and an exit code.
    Tracebacks only with GUARD_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except GuardError as err:
            if debug():
                raise
            raise fail(err.message, err.hint, err.code) from None
        except BrokenPipeError:
            # `guard classify - | head`: the reader went away; that is not an error.
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            finally:
                raise typer.Exit(0) from None
        except Exception as err:
            if debug():
                raise
            raise fail(
                f"{type(err).__name__}: {err}",
                "This is unexpected; rerun with GUARD_DEBUG=1 for a traceback and report it.",
                ExitCode.MODEL,
            ) from None

    return wrapper  # type: ignore[return-value]
