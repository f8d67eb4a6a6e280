"""The options only `guard classify` takes: reading, the Ray engine, generative guards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardcli.cli._options import CountOption, PositiveFloatOption

ClassifyInputOpt = Annotated[
    str | None,
    typer.Option(
        "--input",
        "-i",
        help="Read records from this file ('-' for stdin). With --engine ray: a JSONL or "
        "Parquet file, folder or quoted glob, local or any fsspec URL (s3://, gs://).",
    ),
]
KeepOpt = Annotated[
    list[str] | None,
    typer.Option("--keep", help="Copy this input field to the output (repeatable)."),
]
ShowInputOpt = Annotated[
    bool,
    typer.Option("--show-input", help="Print the exact text the model receives; no model run."),
]
FailClosedOpt = Annotated[
    bool,
    typer.Option("--fail-closed", help="Mark records that cannot be judged as flagged."),
]
CategoryThresholdsOpt = Annotated[
    Path | None,
    typer.Option(
        "--thresholds",
        help="Per-category thresholds of a multilabel model (opencc-cm): a JSON file "
        "{category: threshold}, as `guard sweep --write-thresholds` writes.",
        dir_okay=False,
    ),
]
PipelineOpt = Annotated[
    Path | None,
    typer.Option(
        "--pipeline",
        help="Run an escalation pipeline (YAML: screens in order, then an optional judge) "
        "instead of one --model; each verdict carries `decision` allow|block|escalate "
        "and the stage verdicts under `stages`.",
        dir_okay=False,
    ),
]
AllowEmptyOpt = Annotated[
    bool,
    typer.Option(
        "--allow-empty",
        help="Exit 0 when the input holds no records (by default that is an input error, "
        "exit 2, so a failed upstream command never passes the gate).",
    ),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine", help="local: this process. ray: Ray Data, on a local Ray or a cluster."
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Ray cluster to join: auto, or ray://HOST:10001. Default: RAY_ADDRESS, "
        "else a local Ray on the usable CPUs.",
    ),
]
ShardsOpt = Annotated[
    str | None,
    typer.Option("--output", "-o", help="--engine ray: folder (or URL) for the shards."),
]
ShardFormatOpt = Annotated[
    str, typer.Option("--output-format", help="--engine ray: shard format, jsonl|parquet.")
]
WorkersOpt = Annotated[
    int | None,
    CountOption(
        "--workers", help="--engine ray: actors, each with its own guard. Default: CPUs - 1."
    ),
]
CpusPerWorkerOpt = Annotated[
    float | None,
    PositiveFloatOption(
        "--cpus-per-worker",
        help="--engine ray: CPUs each actor reserves (fractions allowed). "
        "Default: 1, less when that would leave no CPU for reading and writing.",
    ),
]
TimingsOpt = Annotated[
    bool,
    typer.Option(
        "--timings",
        help="Print where the wall time went (start-up and imports, session load, "
        "inference) on stderr. Also GUARD_TIMING=1.",
    ),
]
LooseOpt = Annotated[
    bool,
    typer.Option(
        "--loose/--strict",
        help="Generative guards: --strict (default) flags Controversial, --loose does not.",
    ),
]
ScoreOpt = Annotated[
    bool,
    typer.Option(
        "--score/--no-score",
        help="Generative guards: add score mode's P(Unsafe[+Controversial]) (one extra "
        "forward pass; from logprobs on an endpoint).",
    ),
]
ResponseOpt = Annotated[
    str | None,
    typer.Option(
        "--response",
        help="Generative guards: moderate this assistant response to the single prompt given.",
    ),
]
EndpointOpt = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        help="OpenAI-compatible base URL serving the guard (vLLM: http://host:8000/v1).",
    ),
]
ServedModelOpt = Annotated[
    str | None,
    typer.Option("--served-model", help="Model name on --endpoint. Default: the hub repo id."),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", help="Key for --endpoint. Default: $OPENAI_API_KEY."),
]
ConcurrencyOpt = Annotated[
    int | None,
    CountOption("--concurrency", help="Requests in flight to --endpoint. Default: 8."),
]
LongOpt = Annotated[
    str | None,
    typer.Option(
        "--long",
        help="Encoder classifiers (hf-seqcls): how a text longer than the model's window is "
        "judged. truncate (default): its first --max-length tokens. segments: overlapping "
        "windows of the whole text; the verdict is the worst window's, and `segment` says which "
        "(index, count, start, end: character offsets).",
    ),
]
UnsafeLabelsOpt = Annotated[
    str | None,
    typer.Option(
        "--unsafe-labels",
        help="Encoder classifiers (hf-seqcls): the labels (config.json id2label names, or "
        "indices) that count as unsafe, comma-separated, e.g. MALICIOUS. Default: the catalog "
        "entry's, else every label but index 0 (single-label) or every label (multi-label).",
    ),
]


def family_options(
    long: str | None, unsafe_labels: str | None, policy: Path | None = None
) -> dict[str, str]:
    """--long, --unsafe-labels and --policy as family options, only those given (a family they
    do not apply to then says so)."""
    given = {
        "long": long,
        "unsafe_labels": unsafe_labels,
        "policy": None if policy is None else str(policy),
    }
    return {name: value for name, value in given.items() if value is not None}
