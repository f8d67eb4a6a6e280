"""`guard classify`: moderate prompts from arguments, stdin or a JSONL file."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ExitCode
from ..records import FORMATS, ReadOptions, VerdictWriter, read_args, read_lines
from ..verdict import Record
from ._options import (
    BackendOpt,
    BatchSizeOpt,
    FormatOpt,
    InputOpt,
    MaxLengthOpt,
    ModelOpt,
    QuietOpt,
    ThreadsOpt,
    ThresholdOpt,
    VariantOpt,
)
from ._output import fail, handle_errors, stderr

EPILOG = (
    "Exit codes: 0 nothing flagged, 1 at least one record flagged, "
    "2 usage or input error (a bad option or a bad record), 3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard classify 'a watercolor lighthouse at dusk'\n\n"
    "  jq -c '{id, text: .prompt}' in.jsonl | guard classify - > verdicts.jsonl\n\n"
    "  guard classify --input prompts.jsonl --variant int8 --format csv"
)


def _open_records(texts: list[str], input_path: Path | None, opts: ReadOptions) -> Iterator[Record]:
    if input_path is not None and texts:
        raise fail("Give texts as arguments or --input FILE, not both.")
    if input_path is not None and str(input_path) != "-":
        try:
            handle = open(input_path, "rb")  # noqa: SIM115 - closed when the generator ends
        except OSError as exc:
            raise fail(f"Cannot read {input_path}: {exc.strerror}.") from None
        return _closing(handle, opts)
    if texts and texts != ["-"]:
        return read_args(texts)
    if input_path is None and not texts and sys.stdin.isatty():
        raise fail(
            "Nothing to classify.",
            "Give texts as arguments, pipe lines or JSONL on stdin (or '-'), or pass --input FILE.",
        )
    return read_lines(sys.stdin.buffer, opts)


def _closing(handle, opts: ReadOptions) -> Iterator[Record]:
    with handle:
        yield from read_lines(handle, opts)


@handle_errors
def classify(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="Texts to classify. '-' (or nothing, when piped) reads stdin."),
    ] = None,
    *,
    input_path: InputOpt = None,
    model: ModelOpt = "csam-guard",
    variant: VariantOpt = "auto",
    backend: BackendOpt = None,
    threshold: ThresholdOpt = None,
    max_length: MaxLengthOpt = None,
    batch_size: BatchSizeOpt = None,
    threads: ThreadsOpt = None,
    text_field: Annotated[
        str | None,
        typer.Option("--text-field", help="JSON field with the text. Default: text, else prompt."),
    ] = None,
    id_field: Annotated[
        str, typer.Option("--id-field", help="JSON field with the id. Default: the line number.")
    ] = "id",
    keep: Annotated[
        list[str] | None,
        typer.Option("--keep", help="Copy this input field to the output (repeatable)."),
    ] = None,
    fmt: FormatOpt = None,
    show_input: Annotated[
        bool,
        typer.Option("--show-input", help="Print the exact text the model receives; no model run."),
    ] = False,
    fail_closed: Annotated[
        bool,
        typer.Option("--fail-closed", help="Mark records that cannot be judged as flagged."),
    ] = False,
    quiet: QuietOpt = False,
    timings: Annotated[
        bool,
        typer.Option(
            "--timings",
            help="Print where the wall time went (start-up and imports, session load, "
            "inference) on stderr. Also GUARD_TIMING=1.",
        ),
    ] = False,
) -> None:
    """Classify prompts: one verdict per input record, in input order.

    A stdin or file line that parses as a JSON object is a record; any other line is plain
    text. Bad records (broken JSON, missing or empty text, invalid UTF-8) yield an error record
    in place; nothing is dropped.
    """
    from .. import timings as timing
    from ..api import load_guard
    from ..classify import classify_into, rendered_inputs
    from ..synthetic import is_synthetic

    clock = timing.Clock() if timings or timing.wanted() else None

    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt not in FORMATS:
        raise fail(f"Unknown format {fmt!r}.", f"Choose one of: {', '.join(FORMATS)}.")
    keep_fields = tuple(keep or ())
    opts = ReadOptions(text_field=text_field, id_field=id_field, keep=keep_fields)
    records = _open_records(list(texts or []), input_path, opts)
    guard = load_guard(
        model,
        variant=variant,
        backend=backend,
        threshold=threshold,
        max_length=max_length,
        batch_size=batch_size,
        threads=threads,
        fail_closed=fail_closed,
    )
    console = stderr()
    if is_synthetic(guard.model.path) and not quiet:
        console.print(
            f"note: {guard.model.path} is a synthetic model with random weights; "
            "its verdicts are meaningless."
        )
    if show_input:
        for row in rendered_inputs(guard, records):
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        return
    writer = VerdictWriter(sys.stdout, fmt, keep_fields)
    progress = console.is_terminal and not quiet
    status = console.status("classifying…") if progress else None
    if status:
        status.start()
    try:
        summary = classify_into(
            guard,
            records,
            writer.write,
            on_chunk=(lambda s: status.update(f"classifying… {s.line()}")) if status else None,
        )
    finally:
        if status:
            status.stop()
    writer.close()
    if progress:
        console.print(f"{guard.name} ({guard.variant}): {summary.line()}")
    if clock is not None:
        for line in clock.lines():
            console.print(line, highlight=False)
    code = summary.exit_code
    if code != ExitCode.OK:
        raise typer.Exit(int(code))
