"""`guard classify`: moderate prompts from arguments, stdin or a JSONL file."""

from __future__ import annotations

from typing import Annotated

import typer

from guardcli.cli._classify_options import (
    AllowEmptyOpt,
    ApiKeyOpt,
    CategoryThresholdsOpt,
    ClassifyInputOpt,
    ConcurrencyOpt,
    CpusPerWorkerOpt,
    EndpointOpt,
    EngineOpt,
    FailClosedOpt,
    KeepOpt,
    LongOpt,
    LooseOpt,
    PipelineOpt,
    RayAddressOpt,
    ResponseOpt,
    ScoreOpt,
    ServedModelOpt,
    ShardFormatOpt,
    ShardsOpt,
    ShowInputOpt,
    TimingsOpt,
    UnsafeLabelsOpt,
    WorkersOpt,
)
from guardcli.cli._classify_run import ClassifyRequest, run
from guardcli.cli._options import (
    BackendOpt,
    BatchSizeOpt,
    CacheMbOpt,
    CacheOpt,
    DtypeOpt,
    FormatOpt,
    IdFieldOpt,
    MaxLengthOpt,
    ModelOpt,
    PolicyOpt,
    QuietOpt,
    TextFieldOpt,
    ThreadsOpt,
    ThresholdOpt,
    VariantOpt,
    VerboseOpt,
    backend_name,
)
from guardcli.cli._output import handle_errors
from guardcli.core.verdict_cache import DEFAULT_CACHE_MB

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
    "  guard classify --pipeline escalation.yaml --input prompts.jsonl\n\n"
    "  guard classify -m llama-guard-3-1b --policy policy.yaml --input prompts.jsonl"
)


@handle_errors
def classify(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="Texts to classify. '-' (or nothing, when piped) reads stdin."),
    ] = None,
    *,
    input_path: ClassifyInputOpt = None,
    model: ModelOpt = "csam-guard",
    variant: VariantOpt = "auto",
    backend: BackendOpt = None,
    dtype: DtypeOpt = None,
    threshold: ThresholdOpt = None,
    max_length: MaxLengthOpt = None,
    long: LongOpt = None,
    unsafe_labels: UnsafeLabelsOpt = None,
    policy: PolicyOpt = None,
    batch_size: BatchSizeOpt = None,
    threads: ThreadsOpt = None,
    text_field: TextFieldOpt = None,
    id_field: IdFieldOpt = "id",
    keep: KeepOpt = None,
    fmt: FormatOpt = None,
    show_input: ShowInputOpt = False,
    fail_closed: FailClosedOpt = False,
    thresholds: CategoryThresholdsOpt = None,
    pipeline: PipelineOpt = None,
    quiet: QuietOpt = False,
    allow_empty: AllowEmptyOpt = False,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    output: ShardsOpt = None,
    output_format: ShardFormatOpt = "jsonl",
    workers: WorkersOpt = None,
    cpus_per_worker: CpusPerWorkerOpt = None,
    timings: TimingsOpt = False,
    cache: CacheOpt = True,
    cache_mb: CacheMbOpt = DEFAULT_CACHE_MB,
    loose: LooseOpt = False,
    score: ScoreOpt = True,
    response: ResponseOpt = None,
    endpoint: EndpointOpt = None,
    served_model: ServedModelOpt = None,
    api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Classify prompts: one verdict per input record, in input order.

    A stdin or file line that parses as a JSON object is a record; any other line is plain
    text. Bad records (broken JSON, missing or empty text, invalid UTF-8) yield an error record
    in place; nothing is dropped. Blank lines are skipped (and counted on stderr); ids default
    to the line number.
    """
    options = dict(locals())
    options["backend"] = backend_name(backend)
    run(ClassifyRequest(**options))
