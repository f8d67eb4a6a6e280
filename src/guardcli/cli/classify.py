"""`guard classify`: moderate prompts from arguments, stdin or a JSONL file."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import ExitCode
from ..records import ReadOptions, ReadStats, VerdictWriter, read_args, read_lines
from ..strict_json import dumps
from ..verdict import Record
from ._options import (
    BackendOpt,
    BatchSizeOpt,
    CountOption,
    DtypeOpt,
    FormatOpt,
    IdFieldOpt,
    LongOpt,
    MaxLengthOpt,
    ModelOpt,
    PositiveFloatOption,
    QuietOpt,
    TextFieldOpt,
    ThreadsOpt,
    ThresholdOpt,
    UnsafeLabelsOpt,
    VariantOpt,
    VerboseOpt,
    backend_name,
)
from ._output import choose_format, fail, handle_errors, stderr, verbose_env
from ._tables import InputTexts, verdict_table

if TYPE_CHECKING:
    from ..classify import Summary

EPILOG = (
    "Exit codes: 0 nothing flagged, 1 at least one record flagged, "
    "2 usage or input error (a bad option, a bad record, or no records at all unless "
    "--allow-empty), 3 model or runtime error (also a score that is not a finite number).\n\n"
    "Examples:\n\n"
    "  guard classify 'a watercolor lighthouse at dusk'\n\n"
    "  jq -c '{id, text: .prompt}' in.jsonl | guard classify - > verdicts.jsonl\n\n"
    "  guard classify --input prompts.jsonl --variant int8 --format csv\n\n"
    "  guard classify --engine ray --input 'logs/*.jsonl' --output verdicts/ --workers 4\n\n"
    "  guard classify -m opencc-cm --thresholds thresholds.json --input prompts.jsonl\n\n"
    "  guard classify --pipeline escalation.yaml --input prompts.jsonl"
)
ENGINES = ("local", "ray")


def _open_records(
    texts: list[str], input_path: str | None, opts: ReadOptions, stats: ReadStats
) -> Iterator[Record]:
    if input_path is not None and texts:
        raise fail("Give texts as arguments or --input FILE, not both.")
    if input_path is not None and input_path != "-":
        try:
            handle = open(Path(input_path), "rb")  # noqa: SIM115 - closed when the generator ends
        except OSError as exc:
            raise fail(f"Cannot read {input_path}: {exc.strerror}.") from None
        return _closing(handle, opts, stats)
    if texts and texts != ["-"]:
        return read_args(texts)
    if input_path is None and not texts and sys.stdin.isatty():
        raise fail(
            "Nothing to classify.",
            "Give texts as arguments, pipe lines or JSONL on stdin (or '-'), or pass --input FILE.",
        )
    return read_lines(sys.stdin.buffer, opts, stats)


# A few short prompts given as arguments make a short run of one or two model calls: onnxruntime's
# weight prepacking (about 0.9 s at load for a 0.6B model, saving about 0.2 s a call) would not
# pay for itself.
ONE_SHOT_PROMPTS = 8
ONE_SHOT_CHARS = 4000


def _one_shot(texts: list[str] | None, input_path: str | None, response: str | None) -> bool:
    if input_path is not None or not texts or texts == ["-"] or len(texts) > ONE_SHOT_PROMPTS:
        return False
    return sum(len(t) for t in texts) + len(response or "") <= ONE_SHOT_CHARS


def _closing(handle, opts: ReadOptions, stats: ReadStats) -> Iterator[Record]:
    with handle:
        yield from read_lines(handle, opts, stats)


def _check_read(records: int, stats: ReadStats, allow_empty: bool, quiet: bool) -> None:
    """Blank lines are skipped and said so; no record at all is an input error (an upstream
    `jq` that failed must not pass the gate) unless --allow-empty."""
    if stats.blank and not quiet:
        stderr().print(f"{stats.blank} blank lines skipped", markup=False)
    if records == 0 and not allow_empty:
        raise fail(
            "no records read: the input is empty"
            + (f" ({stats.blank} blank lines)." if stats.blank else "."),
            "Check the command that feeds guard; pass --allow-empty if no input is fine.",
        )


def _response_record(prompt: str, response: str) -> Record:
    return Record(
        id="1",
        text=prompt,
        messages=[{"role": "user", "content": prompt}, {"role": "assistant", "content": response}],
        line=1,
    )


def _family_options(
    loose, score, served_model, api_key, concurrency, long=None, unsafe_labels=None
) -> dict:
    """Only options the user changed, so a family they do not apply to can say so."""
    options: dict = {}
    if long is not None:
        options["long"] = long
    if unsafe_labels is not None:
        options["unsafe_labels"] = unsafe_labels
    if loose:
        options["strict"] = False
    if not score:
        options["score"] = False
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
    input_path: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="Read records from this file ('-' for stdin). With --engine ray: a JSONL or "
            "Parquet file, folder or quoted glob, local or any fsspec URL (s3://, gs://).",
        ),
    ] = None,
    model: ModelOpt = "csam-guard",
    variant: VariantOpt = "auto",
    backend: BackendOpt = None,
    dtype: DtypeOpt = None,
    threshold: ThresholdOpt = None,
    max_length: MaxLengthOpt = None,
    long: LongOpt = None,
    unsafe_labels: UnsafeLabelsOpt = None,
    batch_size: BatchSizeOpt = None,
    threads: ThreadsOpt = None,
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = "id",
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
    thresholds: Annotated[
        Path | None,
        typer.Option(
            "--thresholds",
            help="Per-category thresholds of a multilabel model (opencc-cm): a JSON file "
            "{category: threshold}, as `guard sweep --write-thresholds` writes.",
            dir_okay=False,
        ),
    ] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            "--pipeline",
            help="Run an escalation pipeline (YAML: screens in order, then an optional judge) "
            "instead of one --model; each verdict carries `decision` allow|block|escalate "
            "and the stage verdicts under `stages`.",
            dir_okay=False,
        ),
    ] = None,
    quiet: QuietOpt = False,
    allow_empty: Annotated[
        bool,
        typer.Option(
            "--allow-empty",
            help="Exit 0 when the input holds no records (by default that is an input error, "
            "exit 2, so a failed upstream command never passes the gate).",
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine", help="local: this process. ray: Ray Data, on a local Ray or a cluster."
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to join: auto, or ray://HOST:10001. Default: RAY_ADDRESS, "
            "else a local Ray on the usable CPUs.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="--engine ray: folder (or URL) for the shards."),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--output-format", help="--engine ray: shard format, jsonl|parquet.")
    ] = "jsonl",
    workers: Annotated[
        int | None,
        CountOption(
            "--workers", help="--engine ray: actors, each with its own guard. Default: CPUs - 1."
        ),
    ] = None,
    cpus_per_worker: Annotated[
        float | None,
        PositiveFloatOption(
            "--cpus-per-worker",
            help="--engine ray: CPUs each actor reserves (fractions allowed). "
            "Default: 1, less when that would leave no CPU for reading and writing.",
        ),
    ] = None,
    timings: Annotated[
        bool,
        typer.Option(
            "--timings",
            help="Print where the wall time went (start-up and imports, session load, "
            "inference) on stderr. Also GUARD_TIMING=1.",
        ),
    ] = False,
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
        CountOption("--concurrency", help="Requests in flight to --endpoint. Default: 8."),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Classify prompts: one verdict per input record, in input order.

    A stdin or file line that parses as a JSON object is a record; any other line is plain
    text. Bad records (broken JSON, missing or empty text, invalid UTF-8) yield an error record
    in place; nothing is dropped. Blank lines are skipped (and counted on stderr); ids default
    to the line number.
    """
    backend = backend_name(backend)
    from .. import timings as timing
    from ..api import load_guard
    from ..classify import classify_into, rendered_inputs
    from ..synthetic import is_synthetic
    from ..thresholds import read_thresholds

    if engine not in ENGINES:
        raise fail(f"Unknown engine {engine!r}.", f"Choose one of: {', '.join(ENGINES)}.")
    if engine == "ray":
        from ..scale import GuardSpec

        if long is not None or unsafe_labels is not None:
            raise fail("--long and --unsafe-labels do not apply to --engine ray yet.")
        if texts or show_input or fmt:
            raise fail(
                "--engine ray reads --input and writes --output shards.",
                "Drop texts, --show-input and --format (use --output-format).",
            )
        if not input_path or input_path == "-" or not output:
            raise fail(
                "--engine ray needs --input PATH_OR_GLOB and --output DIR.",
                "stdin cannot be split across workers; pass files.",
            )
        _classify_ray(
            input_path,
            output,
            spec=GuardSpec(
                model=model,
                variant=variant,
                threshold=threshold,
                max_length=max_length,
                batch_size=batch_size,
                threads=threads,
                fail_closed=fail_closed,
                backend=backend,
                thresholds=read_thresholds(thresholds) if thresholds else None,
                dtype=dtype,
            ),
            read=ReadOptions(text_field=text_field, id_field=id_field, keep=tuple(keep or ())),
            output_format=output_format,
            workers=workers,
            cpus_per_worker=cpus_per_worker,
            address=ray_address,
            quiet=quiet,
            allow_empty=allow_empty,
            verbose=verbose,
        )
        return
    ray_only = {
        "--ray-address": ray_address,
        "--output": output,
        "--workers": workers,
        "--cpus-per-worker": cpus_per_worker,
    }
    given = [name for name, value in ray_only.items() if value is not None]
    if given:
        raise fail(f"{', '.join(given)} only apply to --engine ray.")
    clock = timing.Clock() if timings or timing.wanted() else None

    fmt = choose_format(fmt)
    keep_fields = tuple(keep or ())
    opts = ReadOptions(text_field=text_field, id_field=id_field, keep=keep_fields)
    stats = ReadStats()
    if response is not None:
        if input_path is not None or len(texts or []) != 1 or texts == ["-"]:
            raise fail("--response needs exactly one prompt as an argument.")
        records: Iterator[Record] = iter([_response_record(texts[0], response)])  # type: ignore[index]
    else:
        records = _open_records(list(texts or []), input_path, opts, stats)
    inputs = InputTexts()
    if fmt == "table":
        records = inputs.tap(records)
    if pipeline is not None:
        if show_input or thresholds is not None or threshold is not None:
            raise fail(
                "--pipeline cannot be combined with --show-input, --threshold or --thresholds.",
                "Set each stage's threshold or thresholds in the pipeline file.",
            )
        if dtype is not None:
            raise fail(
                "--pipeline cannot be combined with --dtype.",
                "Pipeline stages run torch models in the auto dtype (bfloat16 with native bf16, "
                "else float32).",
            )
        summary = _classify_pipeline(
            pipeline,
            records,
            _writer(fmt, ("decision", "stages", *keep_fields), fail_closed, inputs),
            batch_size,
            threads,
            fail_closed,
        )
        _check_read(summary.records, stats, allow_empty, quiet)
        if summary.exit_code != ExitCode.OK:
            raise typer.Exit(int(summary.exit_code))
        return
    guard = load_guard(
        model,
        variant=variant,
        backend=backend,
        threshold=threshold,
        max_length=max_length,
        batch_size=batch_size,
        threads=threads,
        fail_closed=fail_closed,
        thresholds=thresholds,
        endpoint=endpoint,
        one_shot=_one_shot(texts, input_path, response),
        dtype=dtype,
        **_family_options(loose, score, served_model, api_key, concurrency, long, unsafe_labels),
    )
    console = stderr()
    if is_synthetic(guard.model.path) and not quiet:
        console.print(
            f"note: {guard.model.path} is a synthetic model with random weights; "
            "its verdicts are meaningless."
        )
    if show_input:
        shown = 0
        for row in rendered_inputs(guard, records):
            sys.stdout.write(dumps(row) + "\n")
            sys.stdout.flush()
            shown += 1
        _check_read(shown, stats, allow_empty, quiet)
        return
    writer = _writer(fmt, keep_fields, fail_closed, inputs)
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
    _check_read(summary.records, stats, allow_empty, quiet)
    code = summary.exit_code
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _writer(fmt: str, keep: tuple[str, ...], fail_closed: bool, shown: InputTexts) -> VerdictWriter:
    def table(rows: list[dict[str, Any]]) -> None:
        verdict_table(rows, sys.stdout, shown.texts)

    return VerdictWriter(sys.stdout, fmt, keep, fail_closed=fail_closed, table=table)


def _classify_ray(
    input_path: str, output: str, *, quiet: bool, allow_empty: bool, verbose: bool, **kwargs: Any
) -> None:
    from ..scale import classify_with_ray

    # Ray Data reports progress as INFO log lines when stderr is no terminal (~25 a run): bars
    # for a person at a terminal, nothing in a pipe or a CI log unless --verbose.
    progress = not quiet and (verbose or verbose_env() or stderr().is_terminal)
    result = classify_with_ray(input_path, output, progress=progress, **kwargs)
    if not quiet:
        stderr().print(result.line(), markup=False)
    result.check()
    _check_read(result.records_out, ReadStats(), allow_empty, quiet)
    code = result.summary.exit_code
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _classify_pipeline(
    path: Path,
    records: Iterator[Record],
    writer: VerdictWriter,
    batch_size: int | None,
    threads: int | None,
    fail_closed: bool,
) -> Summary:
    from ..classify import classify_into
    from ..pipeline import load_pipeline

    pipe = load_pipeline(path, batch_size=batch_size, threads=threads, fail_closed=fail_closed)
    summary = classify_into(pipe, records, writer.write)
    writer.close()
    if sys.stderr.isatty():
        stderr().print(f"pipeline {pipe.name}: {summary.line()}")
    return summary
