"""Options shared by several commands, defined once, with the validators every number goes
through at the door (a bad value is a usage error, exit 2, naming the option)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from guardcli.cli._output import RECORD_FORMATS, REPORT_FORMATS, formats_help
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.thresholds import THRESHOLD_HINT, parse_threshold


def comma_list(text: str | None) -> tuple[str, ...]:
    """The one comma-list parser: 'a, b,,c' -> ('a', 'b', 'c'); None or '' -> ()."""
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


def threshold_value(text: str) -> float:
    """--threshold: the library's one threshold parser, as a click parameter type."""
    try:
        return parse_threshold(text, "the threshold")
    except GuardError as err:
        raise typer.BadParameter(f"{err.message} {THRESHOLD_HINT}") from None


def positive_float(text: str) -> float:
    """A finite number > 0 (seconds, CPUs): click's FloatRange lets NaN through."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number.") from None
    if not math.isfinite(value) or value <= 0:
        raise typer.BadParameter(f"{text} is not a finite number > 0.")
    return value


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (a tolerance): click's FloatRange lets NaN through, and a NaN
    tolerance would pass every check."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number.") from None
    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"{text} is not a finite number >= 0.")
    return value


def fraction_value(text: str) -> float:
    """A rate or a target in [0, 1] (recall, FPR, flip rate): finite, unlike click's FloatRange."""
    try:
        value = float(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a number.") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise typer.BadParameter(f"{text} is outside [0, 1].")
    return value


def NonNegativeFloatOption(*flags: str, help: str, **extra: Any) -> Any:  # noqa: N802
    """An option holding a finite amount >= 0 (a tolerance)."""
    return typer.Option(*flags, help=help, parser=nonnegative_float, metavar="FLOAT", **extra)


def FractionOption(*flags: str, help: str, **extra: Any) -> Any:  # noqa: N802
    """An option holding a rate or target in [0, 1]."""
    return typer.Option(*flags, help=help, parser=fraction_value, metavar="FLOAT", **extra)


def CountOption(*flags: str, help: str, **extra: Any) -> Any:  # noqa: N802 - reads as a type
    """An option holding a count (tokens, inputs, threads, workers): a whole number >= 1."""
    return typer.Option(*flags, help=help, min=1, **extra)


def PositiveFloatOption(*flags: str, help: str, **extra: Any) -> Any:  # noqa: N802
    """An option holding a finite amount > 0 (seconds, CPUs)."""
    return typer.Option(*flags, help=help, parser=positive_float, metavar="FLOAT", **extra)


ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="Catalog name (resolved from the local cache, no network) or a model folder.",
    ),
]
VariantOpt = Annotated[
    str,
    typer.Option(
        "--variant",
        help="auto|fp32|fp16|int8|bf16|ov-fp32|ov-int8|gguf-f16|gguf-q8_0. auto picks the fastest "
        "variant present for this CPU: measured by `guard probe-cpu --verify` when stored, else "
        "from its flags. gguf-*: a generative guard on llama.cpp (--backend llamacpp).",
    ),
]
# --backend names, as every command takes them (a family says which of them it runs on).
BACKEND_NAMES = ("onnxruntime", "openvino", "torch", "llamacpp")
BACKEND_ALIASES = {"onnx": "onnxruntime"}  # serve's name before 0.x, still understood


def backend_name(backend: str | None) -> str | None:
    """--backend checked at the door, before seconds are spent loading a model."""
    if backend is None:
        return None
    backend = BACKEND_ALIASES.get(backend, backend)
    if backend not in BACKEND_NAMES:
        raise GuardError(f"Unknown backend {backend!r}.", hint=BACKEND_HINT, code=ExitCode.INPUT)
    return backend


BACKEND_HINT = f"Choose one of: {', '.join(BACKEND_NAMES)}."

BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="onnxruntime|openvino. openvino (the 'openvino' extra, for Intel CPUs) runs fp32 as "
        "ov-fp32 and int8 as ov-int8. Default: the variant's own (bf16, ov-* are OpenVINO's). "
        "Generative guards (qwen3guard-gen) and OpenCC models: onnxruntime|torch; "
        "qwen3guard-gen and llama-guard also llamacpp (the 'llamacpp' extra: a GGUF variant, "
        "made by `guard quantize DIR --to gguf-q8_0`).",
    ),
]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        help="auto|float32|bfloat16: the float type torch paths compute in (OpenCC models, "
        "qwen3guard-gen --backend torch). auto: bfloat16 on CPUs with native bf16 (amx_bf16, "
        "avx512_bf16), else float32. Verdicts name it in their variant (lora-bf16, torch-fp32).",
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold",
        "-t",
        parser=threshold_value,
        metavar="FLOAT",
        help="Flag when score >= this, in [0, 1]. Default: the model's.",
    ),
]
MaxLengthOpt = Annotated[
    int | None,
    CountOption(
        "--max-length",
        help="Tokens per input; longer text is cut and marked "
        "truncated. Default: the model's (384 for CSAM-Guard).",
    ),
]
BatchSizeOpt = Annotated[
    int | None,
    CountOption(
        "--batch-size",
        help="Inputs per model call. Default: 16, under a budget of 4096 padded tokens.",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    CountOption("--threads", help="onnxruntime intra-op threads. Default: the usable cores."),
]
FormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help=formats_help(RECORD_FORMATS)),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
InputOpt = Annotated[
    Path | None,
    typer.Option(
        "--input", "-i", help="Read records from this file ('-' for stdin).", dir_okay=False
    ),
]
CacheDirOpt = Annotated[
    str | None,
    typer.Option(
        "--cache-dir",
        help="Hugging Face cache folder. Default: HF_HUB_CACHE, else HF_HOME/hub "
        "(~/.cache/huggingface/hub).",
    ),
]
TextFieldOpt = Annotated[
    str | None,
    typer.Option("--text-field", help="JSON field with the text. Default: text, else prompt."),
]
IdFieldOpt = Annotated[
    str, typer.Option("--id-field", help="JSON field with the id. Default: the line number.")
]
ReportFormatOpt = Annotated[
    str | None,
    typer.Option("--format", "-f", help=formats_help(REPORT_FORMATS)),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        help="Let third-party warnings and log lines (transformers, onnxruntime, Ray, ...) "
        "through to stderr; by default only guard's own lines are there. Also GUARD_VERBOSE=1.",
    ),
]


PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help="Generative guards (llama-guard, qwen3guard-gen): your own taxonomy, a YAML (or "
        ".toml) file with `categories: [{code, name, description}]` (replaces the model's, in "
        "order) and/or `exclude: [CODE]` (drops categories; qwen3guard-gen: by name). The prompt "
        "lists it, the answer may name only its categories, and verdicts name them. A policy far "
        "from the model's training taxonomy is outside what the model was trained for: measure "
        "it on labelled data with `guard sweep --policy` before relying on it.",
        dir_okay=False,
    ),
]
CacheOpt = Annotated[
    bool,
    typer.Option(
        "--cache/--no-cache",
        help="Judge each distinct input once: a repeat (same model, options and input as the "
        "model sees it) gets the first one's verdict with its own id. --no-cache judges every "
        "record.",
    ),
]
CacheMbOpt = Annotated[
    float,
    PositiveFloatOption(
        "--cache-mb",
        help="Memory cap of the verdict cache in MiB; the least recently used verdicts go first "
        "(classify: a cache this size in each --engine ray worker and each --pipeline stage).",
    ),
]
