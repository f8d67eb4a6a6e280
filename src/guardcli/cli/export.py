"""`guard export`: a local transformers checkpoint -> ONNX FP32 in the CSAM-Guard layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._output import handle_errors, stderr

EPILOG = (
    "SRC is a *ForSequenceClassification checkpoint (e.g. Qwen3ForSequenceClassification), or "
    "the card's PyTorch layout: encoder/ (an AutoModel checkpoint), head.pt (the MLP head's "
    'state_dict) and model_config.json, e.g. {"hidden": 1024, "head_hidden": 256, '
    '"num_labels": 2, "activation": "gelu", "pooling": "last_token", '
    '"max_length": 384}.\n\n'
    "An OpenCC folder (weight_frame.json) gets its LoRA merged and base + head exported to "
    "OUT/onnx/model.onnx (--out SRC writes into it); Qwen3.5 bases do not export (exit 3).\n\n"
    "Exit codes: 0 exported and checked, 2 usage or input error, 3 the export differs from "
    "PyTorch by more than --tolerance, or another model error.\n\n"
    "Examples:\n\n"
    "  guard export ./my-finetune --out ./my-guard\n\n"
    "  guard export ./my-finetune --out ./my-guard && guard quantize ./my-guard --to fp16,int8"
)


@handle_errors
def export(
    src: Annotated[
        Path,
        typer.Argument(
            help="Checkpoint folder (transformers seqcls, or the card's layout).", file_okay=False
        ),
    ],
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model into.")],
    tolerance: Annotated[
        float,
        typer.Option("--tolerance", min=0.0, help="Largest |Δ logit| against PyTorch accepted."),
    ] = 1e-4,
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            min=1,
            help="Tokens per input the model was trained for (recorded in config.json). "
            "Default: model_config.json's, else the tokenizer's, else 384.",
        ),
    ] = None,
) -> None:
    """Export a local transformers checkpoint to ONNX FP32 in the CSAM-Guard layout
    (tokenizer files, config.json, onnx/model.onnx) and check it against PyTorch.

    The graph takes input_ids and attention_mask [batch, sequence] and returns logits; weights go
    to one external-data file above 2 GB. The check runs a padded batch of prompts through both
    and fails (exit 3) when max |Δ logit| exceeds --tolerance. Needs the 'export' extra.
    """
    if (src / "weight_frame.json").is_file():  # OpenCC: LoRA + head on a base LM
        from ._export_opencc import export_opencc_folder

        return export_opencc_folder(src, out, tolerance=tolerance)
    from ..convert.export import export_checkpoint

    console = stderr()
    result = export_checkpoint(
        src,
        out,
        tolerance=tolerance,
        max_length=max_length,
        log=lambda m: console.print(f"export: {m}", markup=False),
    )
    size = result.bytes / 2**20
    data = " + external data" if result.external_data else ""
    console.print(
        f"max |Δ logit| {result.max_abs_diff:.3g} against PyTorch on {result.prompts} prompts "
        f"(tolerance {result.tolerance:g}): ok",
        markup=False,
    )
    console.print(f"wrote {result.graph} ({size:.1f} MiB{data}, from {result.kind})", markup=False)
    typer.echo(str(result.out))
