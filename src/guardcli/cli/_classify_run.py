"""What `guard classify` runs once its options are parsed: the local engine, the Ray engine or
an escalation pipeline, each reading records and writing verdicts in the chosen format."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from guardcli.cli._classify_options import family_options
from guardcli.cli._output import choose_format, fail, stderr, verbose_env
from guardcli.cli._tables import InputTexts, verdict_table
from guardcli.core import timings as timing
from guardcli.core.errors import ExitCode
from guardcli.core.records import ReadOptions, ReadStats, VerdictWriter, read_args, read_lines
from guardcli.core.spec import GuardSpec
from guardcli.core.strict_json import dumps
from guardcli.core.synthetic import is_synthetic
from guardcli.core.thresholds import read_thresholds
from guardcli.core.verdict_cache import VerdictCache
from guardcli.core.verdicts import Record

if TYPE_CHECKING:
    from guardcli.jobs.classify import Summary

ENGINES = ("local", "ray")


@dataclass
class ClassifyRequest:
    """Every option of `guard classify`, as parsed."""

    texts: list[str] | None
    input_path: str | None
    model: str
    variant: str
    backend: str | None
    dtype: str | None
    threshold: float | None
    max_length: int | None
    batch_size: int | None
    threads: int | None
    text_field: str | None
    id_field: str
    keep: list[str] | None
    fmt: str | None
    show_input: bool
    fail_closed: bool
    thresholds: Path | None
    pipeline: Path | None
    quiet: bool
    allow_empty: bool
    engine: str
    ray_address: str | None
    output: str | None
    output_format: str
    workers: int | None
    cpus_per_worker: float | None
    timings: bool
    cache: bool
    cache_mb: float
    loose: bool
    score: bool
    response: str | None
    endpoint: str | None
    served_model: str | None
    api_key: str | None
    concurrency: int | None
    long: str | None
    unsafe_labels: str | None
    policy: Path | None
    verbose: bool

    @property
    def spec(self) -> GuardSpec:
        """The guard these options ask for (the engines add what is theirs)."""
        return GuardSpec(
            model=self.model,
            variant=self.variant,
            backend=self.backend,
            threshold=self.threshold,
            max_length=self.max_length,
            batch_size=self.batch_size,
            threads=self.threads,
            fail_closed=self.fail_closed,
            thresholds=self.thresholds,
            dtype=self.dtype,
        )

    @property
    def read_options(self) -> ReadOptions:
        return ReadOptions(
            text_field=self.text_field, id_field=self.id_field, keep=tuple(self.keep or ())
        )


def run(request: ClassifyRequest) -> None:
    """Check the engine and run it; exits 1 when something is flagged, as the summary says."""
    if request.engine not in ENGINES:
        raise fail(f"Unknown engine {request.engine!r}.", f"Choose one of: {', '.join(ENGINES)}.")
    if request.engine == "ray":
        return run_ray(request)
    ray_only = {
        "--ray-address": request.ray_address,
        "--output": request.output,
        "--workers": request.workers,
        "--cpus-per-worker": request.cpus_per_worker,
    }
    given = [name for name, value in ray_only.items() if value is not None]
    if given:
        raise fail(f"{', '.join(given)} only apply to --engine ray.")
    return run_local(request)


def run_ray(r: ClassifyRequest) -> None:
    from guardcli.jobs.ray import classify_with_ray

    if r.texts or r.show_input or r.fmt:
        raise fail(
            "--engine ray reads --input and writes --output shards.",
            "Drop texts, --show-input and --format (use --output-format).",
        )
    if not r.input_path or r.input_path == "-" or not r.output:
        raise fail(
            "--engine ray needs --input PATH_OR_GLOB and --output DIR.",
            "stdin cannot be split across workers; pass files.",
        )
    spec = replace(
        r.spec,
        thresholds=read_thresholds(r.thresholds) if r.thresholds else None,
        options=family_options(r.long, r.unsafe_labels, r.policy),
    )
    # Ray Data reports progress as INFO log lines when stderr is no terminal (~25 a run): bars
    # for a person at a terminal, nothing in a pipe or a CI log unless --verbose.
    progress = not r.quiet and (r.verbose or verbose_env() or stderr().is_terminal)
    result = classify_with_ray(
        r.input_path,
        r.output,
        spec=spec,
        read=r.read_options,
        output_format=r.output_format,
        workers=r.workers,
        cpus_per_worker=r.cpus_per_worker,
        address=r.ray_address,
        progress=progress,
        cache_mb=r.cache_mb if r.cache else None,
    )
    if not r.quiet:
        stderr().print(result.line(), markup=False)
    result.check()
    _check_read(result.records_out, ReadStats(), r.allow_empty, r.quiet)
    _exit(result.summary.exit_code)


def run_local(r: ClassifyRequest) -> None:
    from guardcli.families.loader import load_guard
    from guardcli.jobs.classify import classify_into, rendered_inputs

    clock = timing.Clock() if r.timings or timing.wanted() else None
    fmt = choose_format(r.fmt)
    keep_fields = tuple(r.keep or ())
    stats = ReadStats()
    records = _records(r, stats)
    inputs = InputTexts()
    if fmt == "table":
        records = inputs.tap(records)
    if r.pipeline is not None:
        return run_pipeline(
            r, records, _writer(fmt, ("decision", "stages", *keep_fields), r, inputs), stats
        )
    guard = load_guard(
        replace(
            r.spec,
            endpoint=r.endpoint,
            one_shot=_one_shot(r.texts, r.input_path, r.response),
            options=_family_options(r),
        )
    )
    if r.cache:
        guard.verdict_cache = VerdictCache.of_mib(r.cache_mb)
    console = stderr()
    if is_synthetic(guard.model.path) and not r.quiet:
        console.print(
            f"note: {guard.model.path} is a synthetic model with random weights; "
            "its verdicts are meaningless."
        )
    if r.show_input:
        shown = 0
        for row in rendered_inputs(guard, records):
            sys.stdout.write(dumps(row) + "\n")
            sys.stdout.flush()
            shown += 1
        _check_read(shown, stats, r.allow_empty, r.quiet)
        return
    writer = _writer(fmt, keep_fields, r, inputs)
    progress = console.is_terminal and not r.quiet
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
    _check_read(summary.records, stats, r.allow_empty, r.quiet)
    _exit(summary.exit_code)


def run_pipeline(
    r: ClassifyRequest, records: Iterator[Record], writer: VerdictWriter, stats: ReadStats
) -> None:
    from guardcli.jobs.classify import classify_into
    from guardcli.jobs.pipeline import load_pipeline

    if r.show_input or r.thresholds is not None or r.threshold is not None:
        raise fail(
            "--pipeline cannot be combined with --show-input, --threshold or --thresholds.",
            "Set each stage's threshold or thresholds in the pipeline file.",
        )
    if r.dtype is not None:
        raise fail(
            "--pipeline cannot be combined with --dtype.",
            "Pipeline stages run torch models in the auto dtype (bfloat16 with native bf16, "
            "else float32).",
        )
    assert r.pipeline is not None
    shared = GuardSpec(batch_size=r.batch_size, threads=r.threads, fail_closed=r.fail_closed)
    pipe = load_pipeline(r.pipeline, shared)
    if r.cache:
        pipe.use_verdict_caches(r.cache_mb)
    summary: Summary = classify_into(pipe, records, writer.write)
    writer.close()
    if sys.stderr.isatty():
        stderr().print(f"pipeline {pipe.name}: {summary.line()}")
    _check_read(summary.records, stats, r.allow_empty, r.quiet)
    _exit(summary.exit_code)


def _exit(code: ExitCode) -> None:
    if code != ExitCode.OK:
        raise typer.Exit(int(code))


def _records(r: ClassifyRequest, stats: ReadStats) -> Iterator[Record]:
    if r.response is not None:
        if r.input_path is not None or len(r.texts or []) != 1 or r.texts == ["-"]:
            raise fail("--response needs exactly one prompt as an argument.")
        return iter([_response_record(r.texts[0], r.response)])  # type: ignore[index]
    return _open_records(list(r.texts or []), r.input_path, r.read_options, stats)


def _writer(
    fmt: str, keep: tuple[str, ...], r: ClassifyRequest, shown: InputTexts
) -> VerdictWriter:
    def table(rows: list[dict[str, Any]]) -> None:
        verdict_table(rows, sys.stdout, shown.texts)

    return VerdictWriter(sys.stdout, fmt, keep, fail_closed=r.fail_closed, table=table)


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


def _family_options(r: ClassifyRequest) -> dict:
    """Only options the user changed, so a family they do not apply to can say so."""
    options: dict = {}
    if r.loose:
        options["strict"] = False
    if not r.score:
        options["score"] = False
    given = {"served_model": r.served_model, "api_key": r.api_key, "concurrency": r.concurrency}
    options.update({name: value for name, value in given.items() if value is not None})
    options.update(family_options(r.long, r.unsafe_labels, r.policy))
    return options
