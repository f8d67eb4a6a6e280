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


def _response_record(prompt: str, response: str) -> Record:
    return Record(
        id="1",
        text=prompt,
        messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        line=1,
    )


def _family_options(loose, score, backend, served_model, api_key, concurrency) -> dict:
    """Only options the user changed, so a family they do not apply to can say so."""
    options: dict = {}
    if loose:
        options["strict"] = False
    if not score:
        options["score"] = False
    if backend != "auto":
        options["backend"] = backend
    for name, value in (
        ("served_model", served_model),
        ("api_key", api_key),
        ("concurrency", concurrency),
    ):
        if value is not None:
            options[name] = value
    return options


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
    loose: Annotated[
        bool,
        typer.Option(
            "--loose/--strict",
            help="Generative guards: --strict (default) flags Controversial, --loose does not.",
        ),
    ] = False,
    score: Annotated[
        bool,
        typer.Option(
            "--score/--no-score",
            help="Generative guards: add score mode's P(Unsafe[+Controversial]) (one extra "
            "forward pass; from logprobs on an endpoint).",
        ),
    ] = True,
    response: Annotated[
        str | None,
        typer.Option(
            "--response",
            help="Generative guards: moderate this assistant response to the single prompt given.",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option("--backend", help="Generative guards: auto|onnx|torch."),
    ] = "auto",
    endpoint: Annotated[
        str | None,
        typer.Option(
            "--endpoint",
            help="OpenAI-compatible base URL serving the guard (vLLM: http://host:8000/v1).",
        ),
    ] = None,
    served_model: Annotated[
        str | None,
        typer.Option("--served-model", help="Model name on --endpoint. Default: the hub repo id."),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="Key for --endpoint. Default: $OPENAI_API_KEY."),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", help="Requests in flight to --endpoint. Default: 8."),
    ] = None,
) -> None:
    """Classify prompts: one verdict per input record, in input order.

    A stdin or file line that parses as a JSON object is a record; any other line is plain
    text. Bad records (broken JSON, missing or empty text, invalid UTF-8) yield an error record
    in place; nothing is dropped.
    """
    from ..api import load_guard
    from ..classify import classify_into, rendered_inputs
    from ..synthetic import is_synthetic

    fmt = fmt or ("table" if sys.stdout.isatty() else "jsonl")
    if fmt not in FORMATS:
        raise fail(f"Unknown format {fmt!r}.", f"Choose one of: {', '.join(FORMATS)}.")
    keep_fields = tuple(keep or ())
    opts = ReadOptions(text_field=text_field, id_field=id_field, keep=keep_fields)
    if response is not None:
        if input_path is not None or len(texts or []) != 1 or texts == ["-"]:
            raise fail("--response needs exactly one prompt as an argument.")
        records: Iterator[Record] = iter([_response_record(texts[0], response)])  # type: ignore[index]
    else:
        records = _open_records(list(texts or []), input_path, opts)
    guard = load_guard(
        model,
        variant=variant,
        threshold=threshold,
        max_length=max_length,
        batch_size=batch_size,
        threads=threads,
        fail_closed=fail_closed,
        endpoint=endpoint,
        **_family_options(loose, score, backend, served_model, api_key, concurrency),
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
    code = summary.exit_code
    if code != ExitCode.OK:
        raise typer.Exit(int(code))
