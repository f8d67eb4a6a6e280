"""Options shared by several commands, defined once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
        help="auto|fp32|fp16|int8|bf16|ov-fp32|ov-int8. auto picks the fastest variant present "
        "for this CPU: measured by `guard probe-cpu --verify` when stored, else from its flags.",
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="onnxruntime|openvino. openvino (the 'openvino' extra, for Intel CPUs) runs fp32 as "
        "ov-fp32 and int8 as ov-int8. Default: the variant's own (bf16, ov-* are OpenVINO's). "
        "Generative guards (qwen3guard-gen) and OpenCC models: onnxruntime|torch.",
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
    typer.Option("--threshold", "-t", help="Flag when score >= this. Default: the model's."),
]
MaxLengthOpt = Annotated[
    int | None,
    typer.Option(
        "--max-length",
        help="Tokens per input; longer text is cut and marked "
        "truncated. Default: the model's (384 for CSAM-Guard).",
    ),
]
BatchSizeOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        help="Inputs per model call. Default: 16, under a budget of 4096 padded tokens.",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", help="onnxruntime intra-op threads. Default: the usable cores."),
]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        "-f",
        help="table|jsonl|json|csv. Default: table on a terminal, jsonl when piped.",
    ),
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
    typer.Option(
        "--format", "-f", help="table|json. Default: table on a terminal, json when piped."
    ),
]
