"""`guard compare`: a model folder's variants against its FP32 graph, on your data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from guardcli.cli._classify_options import LongOpt, UnsafeLabelsOpt, family_options
from guardcli.cli._options import (
    BatchSizeOpt,
    FractionOption,
    IdFieldOpt,
    PolicyOpt,
    QuietOpt,
    ReportFormatOpt,
    TextFieldOpt,
    ThreadsOpt,
    ThresholdOpt,
    VerboseOpt,
    comma_list,
)
from guardcli.cli._output import REPORT_FORMATS, choose_format, handle_errors, stderr
from guardcli.cli._reports import compare_table
from guardcli.cli.sweep import _read
from guardcli.core.errors import ExitCode
from guardcli.core.records import ReadOptions
from guardcli.core.strict_json import dumps

EPILOG = (
    "Records are JSON lines with text (--text-field, default text, else prompt), an id and, "
    "optionally, a label (0/1, true/false, safe/unsafe). The stability check re-scores every "
    "record with a trailing newline, doubled spaces and changed case (lower case, or upper case "
    "for text already in lower case), and counts decisions that change.\n\n"
    "Exit codes: 0 report written, 1 a variant's flip rate against FP32 is above "
    "--max-flip-rate, 2 usage or input error, 3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard compare ./my-guard --variants fp32,fp16,int8 --data labelled.jsonl\n\n"
    "  guard compare ./my-guard --data labelled.jsonl --format json --max-flip-rate 0.01\n\n"
    "  guard compare ./my-guard --variants int8,ov-int8 --data labelled.jsonl --no-stability"
)


@handle_errors
def compare(
    model_dir: Annotated[
        Path, typer.Argument(help="Model folder with onnx/model.onnx and its variants.")
    ],
    *,
    data: Annotated[
        Path, typer.Option("--data", "-d", help="JSONL records ('-' for stdin).", dir_okay=False)
    ],
    variants: Annotated[
        str,
        typer.Option(
            "--variants",
            help="Variants to compare, comma separated (fp32, onnxruntime's, is always the "
            "reference): fp16, int8, and OpenVINO's ov-fp32, bf16, ov-int8.",
        ),
    ] = "fp32,fp16,int8",
    threshold: ThresholdOpt = None,
    label_field: Annotated[
        str, typer.Option("--label-field", help="JSON field with the label, if any.")
    ] = "label",
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = "id",
    stability: Annotated[
        bool,
        typer.Option(
            "--stability/--no-stability",
            help="Re-score with harmless perturbations (3 more passes per variant).",
        ),
    ] = True,
    max_flip_rate: Annotated[
        float | None,
        FractionOption(
            "--max-flip-rate",
            help="Exit 1 when a variant's decision-flip rate against FP32 is above this.",
        ),
    ] = None,
    long: LongOpt = None,
    unsafe_labels: UnsafeLabelsOpt = None,
    policy: PolicyOpt = None,
    batch_size: BatchSizeOpt = None,
    threads: ThreadsOpt = None,
    fmt: ReportFormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Compare a model folder's FP16/INT8 variants with its FP32 graph: decision flips (count,
    rate, ids), max and p99 |Δscore|, the change in recall and precision when records carry
    labels, and flip rates under harmless perturbations (trailing newline, double space, case).
    """
    from guardcli.jobs.convert.compare import (
        CompareOptions,
        compare_variants,
        parse_variants,
        worst_flip_rate,
    )

    fmt = choose_format(fmt, REPORT_FORMATS)
    console = stderr()
    opts = CompareOptions(
        variants=parse_variants(comma_list(variants)),
        threshold=threshold,
        label_field=label_field,
        stability=stability,
        batch_size=batch_size,
        threads=threads,
        options=family_options(long, unsafe_labels, policy),
    )
    records = _read(data, ReadOptions(text_field=text_field, id_field=id_field))
    log = (lambda m: None) if quiet else (lambda m: console.print(f"compare: {m}", markup=False))
    report = compare_variants(model_dir, records, opts, log=log)
    if fmt == "json":
        sys.stdout.write(dumps(report, indent=2, null_non_finite=True) + "\n")
    else:
        compare_table(report, sys.stdout)
    sys.stdout.flush()
    if not quiet:
        for note in report["notes"]:
            console.print(f"note: {note}", markup=False)
    if max_flip_rate is not None and (worst := worst_flip_rate(report)) > max_flip_rate:
        if not quiet:
            console.print(
                f"flip rate {worst:.4f} is above --max-flip-rate {max_flip_rate:g}", markup=False
            )
        raise typer.Exit(int(ExitCode.FLAGGED))
