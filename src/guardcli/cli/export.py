"""`guard export`: a local transformers checkpoint -> ONNX FP32 in the layout its family runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardcli.cli._options import NonNegativeFloatOption, VerboseOpt
from guardcli.cli._output import handle_errors, stderr

EPILOG = (
    "SRC is a *ForSequenceClassification checkpoint (e.g. Qwen3ForSequenceClassification), or "
    "the card's PyTorch layout: encoder/ (an AutoModel checkpoint), head.pt (the MLP head's "
    'state_dict) and model_config.json, e.g. {"hidden": 1024, "head_hidden": 256, '
    '"num_labels": 2, "activation": "gelu", "pooling": "last_token", '
    '"max_length": 384}.\n\n'
    "A causal LM (Qwen3ForCausalLM with Qwen3Guard's chat template, e.g. a Qwen3Guard-Gen "
    "download or `guard synth qwen3guard-gen`) exports for the qwen3guard-gen family: tokenizer "
    "files with the template, config.json, generation_config.json and onnx/model.onnx with KV "
    "cache. It is checked on a left-padded batch of rendered prompts (next-token logits) and by "
    "greedy generation, token for token, against transformers.\n\n"
    "A Qwen3Guard-Stream checkpoint (Qwen3ForGuardModel, e.g. a Qwen3Guard-Stream download) "
    "exports for the qwen3guard-stream family: tokenizer files, config.json, the weights linked, "
    "onnx/model.onnx with KV cache (GroupQueryAttention; the four head outputs at every "
    "position), checked against the PyTorch reference fed as a stream, and "
    "onnx/model_quantized.onnx (every MatMul INT8, activations per row).\n\n"
    "An OpenCC folder (weight_frame.json) gets its LoRA merged and base + head exported to "
    "SRC/onnx/model.onnx (or OUT/onnx/ with --out); Qwen3.5 bases do not export (exit 3).\n\n"
    "Exit codes: 0 exported and checked, 2 usage or input error (including an unsupported "
    "architecture), 3 the export differs from PyTorch by more than --tolerance (or generates "
    "other tokens), a base that does not export, or another model error.\n\n"
    "Examples:\n\n"
    "  guard export ./my-finetune --out ./my-guard\n\n"
    "  guard export ./my-finetune --out ./my-guard && guard quantize ./my-guard --to fp16,int8\n\n"
    "  guard export ./Qwen3Guard-Gen-0.6B --out ./qwen3guard-onnx && "
    "guard quantize ./qwen3guard-onnx --to int8 && "
    'guard classify -m ./qwen3guard-onnx --variant int8 "a prompt"'
)


@handle_errors
def export(
    src: Annotated[
        Path,
        typer.Argument(
            help="Checkpoint folder (transformers seqcls or causal LM, or the card's layout).",
            file_okay=False,
        ),
    ],
    *,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder to write the model into (required, except for an OpenCC folder, "
            "whose graph goes into SRC/onnx/ by default).",
        ),
    ] = None,
    tolerance: Annotated[
        float | None,
        NonNegativeFloatOption(
            "--tolerance",
            help="Largest |Δ logit| against PyTorch accepted. Default: 1e-4 for classifiers "
            "and Qwen3Guard-Stream, 1e-3 for causal LMs.",
        ),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(
            "--family",
            help="seqcls, hf-seqcls, qwen3guard-gen or qwen3guard-stream. Default: from "
            "config.json's architectures (an encoder such as BERT, RoBERTa, DeBERTa or "
            "ModernBERT: hf-seqcls; *ForCausalLM: qwen3guard-gen; Qwen3ForGuardModel: "
            "qwen3guard-stream); qwen3guard-gen also exports a Qwen3ForCausalLM "
            "without Qwen3Guard's template, adding the authors' template.",
        ),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(
            "--max-length",
            min=1,
            help="Tokens per input the model was trained for (recorded in config.json). "
            "Default: model_config.json's, else the tokenizer's, else 384.",
        ),
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Export a local transformers checkpoint to ONNX FP32 in the layout its family runs
    (tokenizer files, config.json, onnx/model.onnx) and check it against PyTorch.

    A classifier's graph takes input_ids and attention_mask [batch, sequence] and returns
    logits; a causal LM's (qwen3guard-gen) carries a KV cache. Weights go to one external-data
    file above 2 GB. The check runs a padded batch of prompts through both and fails (exit 3)
    when max |Δ logit| exceeds --tolerance. Needs the 'export' extra.
    """
    from guardcli.jobs.convert.export import export_checkpoint

    console = stderr()
    result = export_checkpoint(
        src,
        out,
        tolerance=tolerance,
        max_length=max_length,
        family=family,
        log=lambda m: console.print(f"export: {m}", markup=False),
    )
    size = result.bytes / 2**20
    data = " + external data" if result.external_data else ""
    console.print(
        f"max |Δ logit| {result.max_abs_diff:.3g} against {result.reference} on "
        f"{result.prompts} prompts (tolerance {result.tolerance:g}): ok",
        markup=False,
    )
    for note in result.notes:
        console.print(f"{note}: ok", markup=False)
    origin = result.origin or f"from {result.kind}"
    console.print(
        f"wrote {result.graph} ({size:.1f} MiB{data}, {origin}){result.advice}", markup=False
    )
    typer.echo(str(result.out))
