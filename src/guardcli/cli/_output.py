"""The output layer: consoles, the one format choice, third-party noise, and the one place
library errors become messages and exit codes."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import re
import shutil
import sys
import tempfile
import typing
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer.models import OptionInfo

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.records import FORMATS

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# Commands that print records take RECORD_FORMATS; commands that print one report take
# REPORT_FORMATS. Piped, records default to jsonl (streamed) and a report to json.
RECORD_FORMATS = FORMATS  # the records writer's: table|jsonl|json|csv
REPORT_FORMATS = ("table", "json")


def choose_format(fmt: str | None, formats: tuple[str, ...] = RECORD_FORMATS) -> str:
    """--format, decided once: the user's choice, else table on a terminal and the first
    machine format when piped."""
    if fmt is None:
        return "table" if sys.stdout.isatty() else formats[1]
    if fmt not in formats:
        raise fail(f"Unknown format {fmt!r}.", f"Choose one of: {', '.join(formats)}.")
    return fmt


def formats_help(formats: tuple[str, ...]) -> str:
    return f"{'|'.join(formats)}. Default: table on a terminal, {formats[1]} when piped."


# Loggers of libraries guard drives whose INFO and WARNING lines are notes to their own
# developers (transformers' FutureWarnings and kernel fall-backs, onnxruntime quantization's
# "consider pre-processing", Ray's start-up lines): kept off a normal run's stderr.
THIRD_PARTY_LOGGERS = (
    "transformers",
    "torch",
    "onnxruntime",
    "onnx",
    "optimum",
    "peft",
    "nncf",
    "openvino",
    "ray",
    "ray.data",
    "huggingface_hub",
    "filelock",
    "urllib3",
)
_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' own bars too ("Writing model shards")
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_DEDUP_LOGS": "1",
}


def verbose_env() -> bool:
    return os.environ.get("GUARD_VERBOSE", "") not in ("", "0") or debug()


@contextlib.contextmanager
def third_party_output(verbose: bool) -> Iterator[None]:
    """While a command runs: third-party warnings and log lines stay off stderr unless
    --verbose (or GUARD_VERBOSE=1, GUARD_DEBUG=1), so stderr carries guard's own lines.
    Warnings raised by guardcli itself stay on. Everything is put back afterwards."""
    if verbose or verbose_env():
        yield
        return
    loggers = [logging.getLogger(), *map(logging.getLogger, THIRD_PARTY_LOGGERS)]
    ours = logging.getLogger("guardcli")  # guard's own warnings (serve's) stay on
    levels = [log.level for log in (*loggers, ours)]
    env = {key: os.environ.get(key) for key in _QUIET_ENV}
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    for log in loggers:
        log.setLevel(logging.ERROR)
    if ours.level == logging.NOTSET:
        ours.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            warnings.filterwarnings("default", module=r"guardcli(\.|$)")
            yield
    finally:
        for log, level in zip((*loggers, ours), levels, strict=True):
            log.setLevel(level)
        for key, old in env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextlib.contextmanager
def stdin_as_file(path: Path | None) -> Iterator[Path | None]:
    """'-' means stdin for every file option: for a library call that wants a path, stdin is
    spooled to a temporary file for the call's duration. Any other path passes through."""
    if path is None or str(path) != "-":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="guard-stdin-") as folder:
        spooled = Path(folder) / "stdin"
        with open(spooled, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out)
        yield spooled


def stderr() -> Console:
    """People's console: logs, hints, progress. stdout carries data only."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def with_status(work: Callable[[Callable[[str], None]], T], quiet: bool = False) -> T:
    """`work(progress)`, its progress lines shown as a spinner on a terminal's stderr (and
    nowhere else, or with `quiet`)."""
    console = stderr()
    if quiet or not console.is_terminal:
        return work(lambda _: None)
    with console.status("loading…") as status:
        return work(status.update)


def debug() -> bool:
    return os.environ.get("GUARD_DEBUG", "") not in ("", "0")


def fail(message: str, hint: str | None = None, code: ExitCode = ExitCode.INPUT) -> typer.Exit:
    console = stderr()
    # escape: a message may hold brackets ("[models.x] needs repo") that are not markup
    console.print(f"[bold red]Error:[/] {escape(message)}", markup=True, highlight=False)
    if hint:
        console.print(hint, markup=False)
    return typer.Exit(int(code))


# A library hint names the options most commands take. A command that calls the same thing
# otherwise says it in its own words.
HINT_WORDS = {
    "fetch": {
        "Or pass --model DIR with a local model folder.": "Or import a copied model folder "
        "with --from DIR.",
        "or pass --model DIR": "or import a copied model folder with --from DIR",
    },
    "compare": {
        "Pick a variant that is there with --variant,": "Compare variants that are there "
        "(--variants),",
        "or pick another --variant.": "or compare others with --variants.",
    },
}
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_QUOTED = re.compile(r"`[^`]*`")  # `guard other-command --option` names another command's
_SENTENCE = re.compile(r"(?<=[.;])\s+")  # a colon leads into its sentence


def command_options(fn: Callable[..., Any]) -> tuple[str, set[str]]:
    """A command function's name (as typed: probe_cpu -> probe-cpu) and its option names."""
    names: set[str] = set()
    hints = typing.get_type_hints(fn, include_extras=True)
    defaults = {name: p.default for name, p in inspect.signature(fn).parameters.items()}
    for name in defaults:
        infos = [*getattr(hints.get(name), "__metadata__", ()), defaults[name]]
        for info in infos:
            if isinstance(info, OptionInfo):
                # In Annotated form, typer.Option's first argument is a declaration too.
                first = (info.default,) if isinstance(info.default, str) else ()
                for decl in (*first, *(info.param_decls or ())):
                    if not decl.startswith("-"):
                        continue
                    names.update(d.strip() for d in decl.split("/") if d.strip())
    return fn.__name__.replace("_", "-"), names


def own_options(hint: str | None, command: str, names: set[str]) -> str | None:
    """A hint that names only options the command has: the command's own words first
    (HINT_WORDS), then any sentence naming an option it lacks is left out."""
    if hint is None:
        return hint
    for old, new in HINT_WORDS.get(command or "", {}).items():
        hint = hint.replace(old, new)
    sentences = _SENTENCE.split(hint)
    kept = [
        sentence
        for sentence in sentences
        if all(opt in names for opt in _OPTION.findall(_QUOTED.sub("", sentence)))
    ]
    if len(kept) == len(sentences):
        return hint  # as written, line breaks included
    return " ".join(kept) or None


def handle_errors(fn: F) -> F:
    """Map GuardError (and anything unexpected) to a message and an exit code.
    Tracebacks only with GUARD_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with third_party_output(bool(kwargs.get("verbose"))):
                return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except GuardError as err:
            if debug():
                raise
            try:
                hint = own_options(err.hint, *command_options(fn))
            except Exception:  # an unreadable signature must not hide the error itself
                hint = err.hint
            raise fail(err.message, hint, err.code) from None
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
