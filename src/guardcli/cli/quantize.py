"""`guard quantize`: FP16 and INT8 variants of a model folder's onnx/model.onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardcli.cli._options import VerboseOpt, comma_list
from guardcli.cli._output import fail, handle_errors, stderr, stdin_as_file
from guardcli.runtime.onnx_recipes import INT8_KEEP_FLOAT_DEFAULT

BACKENDS = ("onnxruntime", "openvino")

EPILOG = (
    "fp16 writes onnx/model_fp16.onnx: a cast keeping norms and inputs/outputs FP32. int8 writes "
    "onnx/model_quantized.onnx: dynamic per-channel QInt8 with the MatMuls matching "
    "--keep-float (node name or weight name; default down_proj) kept FP32; with --static, a "
    "calibrated static QDQ graph instead. gguf-f16 and gguf-q8_0 (a generative guard's "
    "checkpoint; the 'llamacpp' extra) write DIR/gguf-f16/model.gguf and "
    "DIR/gguf-q8_0/model.gguf for --backend llamacpp.\n\n"
    "Check every variant before shipping it: guard compare DIR --data labelled.jsonl\n\n"
    "Exit codes: 0 written, 2 usage or input error, 3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard quantize ./my-guard --to fp16,int8\n\n"
    "  guard quantize ./my-guard --to int8 --keep-float down_proj --keep-float /head/\n\n"
    "  guard quantize ./my-guard --to int8 --static --calibration prompts.jsonl\n\n"
    "  guard quantize ./qwen3guard-gen --to gguf-q8_0\n\n"
    "  guard quantize ./my-guard --backend openvino --calibration prompts.jsonl"
)


@handle_errors
def quantize(
    model_dir: Annotated[
        Path, typer.Argument(help="Model folder with onnx/model.onnx.", file_okay=False)
    ],
    *,
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Variants to make, comma separated: fp16,int8,gguf-f16,gguf-q8_0."
        ),
    ] = "fp16,int8",
    keep_float: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-float",
            help="INT8: keep MatMuls whose node name or weight name contains PATTERN in FP32 "
            "(repeatable). Default: down_proj; '' quantizes every MatMul.",
        ),
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="onnxruntime: the ONNX variants above. openvino: NNCF post-training INT8 "
            "(openvino/model_int8.xml, the ov-int8 variant), calibrated on --calibration "
            "or the sample prompts.",
        ),
    ] = "onnxruntime",
    static: Annotated[
        bool, typer.Option("--static", help="INT8: calibrated static QDQ instead of dynamic.")
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            help="--static or --backend openvino: representative prompts, JSONL ('text' or "
            "'prompt') or plain lines ('-' for stdin).",
            dir_okay=False,
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Make FP16 and INT8 variants of a model folder's FP32 ONNX graph with the model card's
    recipes (onnx/model_fp16.onnx, onnx/model_quantized.onnx), or with --backend openvino an
    NNCF INT8 (openvino/model_int8.xml), and print their paths.

    Needs the 'export' extra (onnx); --backend openvino needs the 'openvino' extra.
    """
    with stdin_as_file(calibration) as calibration_file:
        _quantize(model_dir, to, keep_float, backend, static, calibration_file)


def _quantize(
    model_dir: Path,
    to: str,
    keep_float: list[str] | None,
    backend: str,
    static: bool,
    calibration: Path | None,
) -> None:
    from guardcli.jobs.convert.quantize import parse_targets, quantize_model

    console = stderr()
    if backend not in BACKENDS:
        raise fail(f"Unknown backend {backend!r}.", f"Choose one of: {', '.join(BACKENDS)}.")
    if not model_dir.is_dir():
        raise fail(f"Model folder {model_dir} does not exist.")
    if backend == "openvino":
        from guardcli.jobs.convert.openvino_quant import quantize_openvino

        if static:
            raise fail("--static applies to --backend onnxruntime (NNCF is always calibrated).")
        given = INT8_KEEP_FLOAT_DEFAULT if keep_float is None else tuple(keep_float)
        out = quantize_openvino(
            model_dir,
            keep_float=tuple(p for p in given if p),
            calibration=calibration,
            log=lambda m: console.print(f"quantize: {m}", markup=False),
        )
        console.print(f"wrote ov-int8: {out}", markup=False)
        typer.echo(str(out))
        return
    results = quantize_model(
        model_dir,
        parse_targets(comma_list(to)),
        keep_float=keep_float,
        static=static,
        calibration=calibration,
        log=lambda m: console.print(f"quantize: {m}", markup=False),
    )
    for r in results:
        kept = f", {len(r.kept_float)} MatMuls kept FP32" if r.variant == "int8" else ""
        console.print(
            f"wrote {r.variant} ({r.recipe}{kept}): {r.path} ({r.bytes / 2**20:.1f} MiB, "
            f"{r.seconds:.1f}s)",
            markup=False,
        )
        typer.echo(str(r.path))
    console.print(f"check them: guard compare {model_dir} --data LABELLED.jsonl", markup=False)
