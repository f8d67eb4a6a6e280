"""`guard quantize`: make an INT8 variant of a model folder on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._output import fail, handle_errors, stderr

BACKENDS = ("onnxruntime", "openvino")
EPILOG = (
    "Exit codes: 0 done, 2 usage or input error, 3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard quantize ./my-finetune --backend openvino --calibration prompts.jsonl\n\n"
    "  guard quantize ./my-finetune --backend openvino --keep-float down_proj --keep-float o_proj"
)


@handle_errors
def quantize(
    model_dir: Annotated[
        Path, typer.Argument(help="Model folder with onnx/model.onnx and tokenizer.json.")
    ],
    *,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="onnxruntime: dynamic INT8 (onnx/model_quantized.onnx, the card's recipe). "
            "openvino: NNCF post-training INT8 (openvino/model_int8.xml, the ov-int8 variant).",
        ),
    ] = "onnxruntime",
    keep_float: Annotated[
        list[str] | None,
        typer.Option(
            "--keep-float",
            help="Keep MatMuls whose name contains this in float (repeatable). "
            "Default: down_proj, as the model card does; '' quantizes every MatMul.",
        ),
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option(
            "--calibration",
            help="openvino: prompts to calibrate on (JSONL text/prompt field or plain lines). "
            "Default: the sample prompts.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Make an INT8 variant of a model's FP32 ONNX file, in the model folder.

    MatMuls matching --keep-float stay in float (an ignored scope for NNCF, excluded nodes for
    onnxruntime). Prints the written file on stdout.
    """
    from ..catalog import ONNX_VARIANT_FILES
    from ..convert.onnx_recipes import INT8_KEEP_FLOAT_DEFAULT

    if backend not in BACKENDS:
        raise fail(f"Unknown backend {backend!r}.", f"Choose one of: {', '.join(BACKENDS)}.")
    if not model_dir.is_dir():
        raise fail(f"Model folder {model_dir} does not exist.")
    if calibration is not None and backend != "openvino":
        raise fail("--calibration applies to --backend openvino (dynamic INT8 needs none).")
    # `--keep-float ''` quantizes every MatMul.
    given = tuple(keep_float) if keep_float is not None else INT8_KEEP_FLOAT_DEFAULT
    patterns = tuple(p for p in given if p)
    console = stderr()
    if backend == "openvino":
        from ..convert.openvino_quant import quantize_openvino

        out = quantize_openvino(
            model_dir, keep_float=patterns, calibration=calibration, log=console.print
        )
    else:
        from ..convert.onnx_recipes import to_int8_dynamic

        src = model_dir / ONNX_VARIANT_FILES["fp32"]
        if not src.exists():
            raise fail(f"{src} does not exist: INT8 is made from the FP32 ONNX file.")
        out = model_dir / ONNX_VARIANT_FILES["int8"]
        kept = to_int8_dynamic(src, out, keep_float=patterns)
        console.print(f"dynamic INT8, {len(kept)} MatMul(s) kept in float")
    console.print(f"wrote {out}")
    typer.echo(str(out))
