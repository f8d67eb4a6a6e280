"""`guard sweep`: choose a threshold from labelled data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from guardcli.cli._classify_options import LongOpt, UnsafeLabelsOpt, family_options
from guardcli.cli._options import (
    BackendOpt,
    BatchSizeOpt,
    DtypeOpt,
    FractionOption,
    IdFieldOpt,
    PolicyOpt,
    QuietOpt,
    ReportFormatOpt,
    TextFieldOpt,
    ThreadsOpt,
    ThresholdOpt,
    VariantOpt,
    VerboseOpt,
    backend_name,
    comma_list,
)
from guardcli.cli._output import REPORT_FORMATS, choose_format, fail, handle_errors, stderr
from guardcli.cli._reports import sweep_table
from guardcli.cli.sweep_render import plot as draw
from guardcli.core.records import ReadOptions, read_lines
from guardcli.core.spec import GuardSpec
from guardcli.core.strict_json import dumps

EPILOG = (
    "Records are JSON lines with a label and either a 'score' (a scores file, or `guard "
    "classify` output) or text to classify with --model. Labels: 0/1, true/false, safe/unsafe, "
    "a category name with --positive, or a list of the categories that apply. Multilabel "
    "records carry 'categories': {name: score} (or {name: {score}}) and 'labels': [names].\n\n"
    "Exit codes: 0 report written, 2 usage or input error (bad option, no usable record), "
    "3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard sweep labelled.jsonl --model csam-guard --group-by lang --plot sweep.png\n\n"
    "  guard sweep labelled.jsonl --scores-out scores.jsonl --format json > sweep.json\n\n"
    "  guard sweep scores.jsonl --target-recall 0.99 --bootstrap 1000 --seed 7\n\n"
    "  guard sweep multilabel.jsonl --max-fpr 0.01 --write-thresholds thresholds.json"
)


def _float_opt(flag: str, help: str):
    return FractionOption(flag, help=help)


@handle_errors
def sweep(
    file: Annotated[
        Path,
        typer.Argument(help="Labelled JSONL records ('-' for stdin).", dir_okay=False),
    ],
    *,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Classify records that have no 'score' with this model (catalog name or "
            "folder). Default: csam-guard, loaded only when a record needs it.",
        ),
    ] = None,
    variant: VariantOpt = "auto",
    backend: BackendOpt = None,
    dtype: DtypeOpt = None,
    policy: PolicyOpt = None,
    threshold: ThresholdOpt = None,
    label_field: Annotated[
        str | None,
        typer.Option(
            "--label-field", help="JSON field with the label. Default: label, else labels."
        ),
    ] = None,
    positive: Annotated[
        str | None,
        typer.Option(
            "--positive",
            help="Which category-name labels are positive: 'Hate Speech,CBRN', or '!Benign' "
            "for all but these.",
        ),
    ] = None,
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = "id",
    target_recall: Annotated[
        float | None,
        _float_opt("--target-recall", "Report the highest threshold whose recall >= R."),
    ] = None,
    target_precision: Annotated[
        float | None,
        _float_opt("--target-precision", "Report the lowest threshold whose precision >= P."),
    ] = None,
    max_fpr: Annotated[
        float | None,
        _float_opt("--max-fpr", "Report the lowest threshold whose false positive rate <= F."),
    ] = None,
    pick: Annotated[
        str | None,
        typer.Option(
            "--pick",
            help="Rule that picks the suggested threshold (and each category's, for "
            "--write-thresholds): best-f1|target-recall|target-precision|max-fpr|zero-fp. "
            "Default: the target given, else best-f1.",
        ),
    ] = None,
    group_by: Annotated[
        str | None,
        typer.Option("--group-by", help="Break down by FIELD[,FIELD] (e.g. lang), worst first."),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap", min=0, help="Resamples for 95% CIs of recall, precision, FPR (0: off)."
        ),
    ] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for --bootstrap.")] = 0,
    points: Annotated[
        int | None,
        typer.Option("--points", min=1, help="Keep N evenly spaced curve points (default: all)."),
    ] = None,
    scores_out: Annotated[
        Path | None,
        typer.Option("--scores-out", help="Save id, score, label as JSONL for a later sweep."),
    ] = None,
    write_thresholds: Annotated[
        Path | None,
        typer.Option(
            "--write-thresholds",
            help="Multilabel: write {category: threshold}, each picked by --pick, as JSON.",
        ),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Draw PR and ROC curves to this PNG (needs guardcli[plot])."),
    ] = None,
    long: LongOpt = None,
    unsafe_labels: UnsafeLabelsOpt = None,
    batch_size: BatchSizeOpt = None,
    threads: ThreadsOpt = None,
    fmt: ReportFormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Measure a model on labelled records and choose a threshold.

    Reports ROC AUC, PR AUC (average precision), counts at --threshold, operating points,
    optional bootstrap CIs and group breakdowns. "Flagged" means score >= threshold.
    """
    backend = backend_name(backend)
    from guardcli.jobs.sweep import SweepOptions, run_sweep, write_scores
    from guardcli.jobs.sweep import write_thresholds as save_thresholds

    fmt = choose_format(fmt, REPORT_FORMATS)
    opts = SweepOptions(
        label_field=label_field,
        positive=positive,
        threshold=threshold,
        points=points,
        target_recall=target_recall,
        target_precision=target_precision,
        max_fpr=max_fpr,
        pick=pick,
        bootstrap=bootstrap,
        seed=seed,
        group_by=comma_list(group_by),
    )
    console = stderr()
    show_progress = console.is_terminal and not quiet and fmt == "table"

    def load():
        from guardcli.families.loader import load_guard

        spec = GuardSpec(
            model=model or "csam-guard",
            variant=variant,
            backend=backend,
            threshold=threshold,
            batch_size=batch_size,
            threads=threads,
            dtype=dtype,
            options=family_options(long, unsafe_labels, policy),
        )
        return load_guard(spec)

    guard = load() if model else None
    with _progress(console, show_progress) as progress:
        result = run_sweep(
            _read(file, ReadOptions(text_field=text_field, id_field=id_field)),
            opts,
            guard=guard,
            load_guard=load,
            on_unscored=progress.start,
            on_batch=progress.advance,
        )
    report = result.report
    if scores_out is not None:
        write_scores(result.examples, scores_out, opts)
    if write_thresholds is not None:
        save_thresholds(report, write_thresholds)
    if plot is not None:
        draw(report, result.curves, plot, title=str(file))
    if fmt == "json":
        sys.stdout.write(dumps(report, indent=2, null_non_finite=True) + "\n")
    else:
        sweep_table(report, sys.stdout, title=str(file))
    sys.stdout.flush()
    if not quiet:
        for note in report["notes"]:
            console.print(f"note: {note}", markup=False)
        written = ((scores_out, "scores"), (write_thresholds, "thresholds"), (plot, "plot"))
        for path, what in written:
            if path is not None:
                console.print(f"wrote {what} to {path}", markup=False)


def _read(file: Path, opts: ReadOptions):
    if str(file) == "-":
        yield from read_lines(sys.stdin.buffer, opts)
        return
    try:
        handle = open(file, "rb")  # noqa: SIM115 - closed when the generator ends
    except OSError as exc:
        raise fail(f"Cannot read {file}: {exc.strerror}.") from None
    with handle:
        yield from read_lines(handle, opts)


class _progress:
    """A rich progress bar for the classification step, only for a person at a terminal."""

    def __init__(self, console: Any, enabled: bool):
        self.console, self.enabled = console, enabled
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> _progress:
        return self

    def start(self, total: int) -> None:
        if not self.enabled:
            return
        from rich.progress import Progress

        self.bar = Progress(console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("classifying", total=total)

    def advance(self, n: int) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
