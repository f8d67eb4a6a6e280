"""`guard synth`: a random-weight model of a family's real architecture, built locally."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardcli.cli._options import VerboseOpt
from guardcli.cli._output import fail, handle_errors, stderr
from guardcli.core.synthetic import SIZES, check_out

EPILOG = (
    "Exit codes: 0 written, 2 usage or input error (a non-empty --out without --force), "
    "3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard synth csam-guard --out ./csam-guard-tiny && "
    "guard classify -m ./csam-guard-tiny 'a teapot'\n\n"
    "  guard synth qwen3guard-gen --out ./qwen3guard-gen-tiny\n\n"
    "  guard synth hf-seqcls --arch deberta-v2 --out ./pg2-tiny\n\n"
    "  guard synth csam-guard --size full --pytorch --out ./csam-guard-full   # for guard export"
)


@handle_errors
def synth(
    family: Annotated[
        str,
        typer.Argument(
            help="Model: csam-guard, qwen3guard-gen, llama-guard, qwen3guard-stream, opencc-cm, "
            "opencc-jb, intent-ctx or hf-seqcls (a transformers encoder classifier; see --arch)."
        ),
    ],
    *,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the model into.")],
    size: Annotated[
        str, typer.Option("--size", help="tiny (tests, seconds) or full (real dimensions).")
    ] = "tiny",
    seed: Annotated[int, typer.Option("--seed", help="Random seed; same seed, same model.")] = 0,
    pytorch: Annotated[
        bool,
        typer.Option(
            "--pytorch",
            help="Also write the card's PyTorch layout (encoder/, head.pt, model_config.json), "
            "a source for `guard export`.",
        ),
    ] = False,
    base: Annotated[
        str,
        typer.Option(
            "--base",
            help="opencc-cm/-jb only: the base architecture, qwen3.5 (the real one) or qwen3 "
            "(one that `guard export` can export to ONNX).",
        ),
    ] = "qwen3.5",
    arch: Annotated[
        str,
        typer.Option(
            "--arch",
            help="hf-seqcls only: deberta-v2 (Prompt Guard 2, protectai), roberta (granite-"
            "guardian-hap, toxicity), xlm-roberta (multilingual classifiers), bert or "
            "modernbert.",
        ),
    ] = "deberta-v2",
    multi_label: Annotated[
        bool,
        typer.Option(
            "--multi-label",
            help="hf-seqcls only: a multi-label head (sigmoid per label, 6 toxicity labels) "
            "instead of a binary softmax one.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write into --out even when it is not empty (files there are replaced)."
        ),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a random-weight model in the real repository layout: csam-guard and intent-ctx
    (a dialogue-intent classifier) as tokenizer.json, config.json and onnx/model.onnx,
    model_fp16.onnx, model_quantized.onnx; opencc-cm and opencc-jb as weight_frame.json, the
    LoRA adapter, the head and the thresholds sidecar, with a Qwen3.5 (or --base qwen3) base of
    that size in base/. hf-seqcls writes a transformers *ForSequenceClassification checkpoint
    of --arch (full: Prompt Guard 2 86M's dimensions for deberta-v2) with its ONNX variants;
    its tokenizer is trained on the fly (no real vocabulary ships offline).

    Its verdicts mean nothing: it exists to test and benchmark the runtime without the hub.
    qwen3guard-gen writes a Qwen3ForCausalLM (safetensors + onnx/model.onnx with KV cache):
    tiny is trained for seconds to answer in Qwen3Guard's format (prompts containing the word
    'zorblax' are Unsafe (Violent), others Safe; responses add a Refusal line); full has
    Qwen3Guard-Gen-0.6B's dimensions and untrained weights (minutes, ~4 GB; benchmarks only).
    qwen3guard-stream writes Qwen3ForGuardModel (safetensors + onnx/model.onnx with KV cache and
    the four head outputs): tiny flags 'zorblax' (Unsafe) and 'quibblex' (Controversial) token
    by token; full has Qwen3Guard-Stream-0.6B's dimensions and untrained weights.
    llama-guard writes a LlamaForCausalLM with Llama Guard 3 1B's template and a stand-in
    tokenizer (a small byte-level BPE with Llama 3's special tokens: no Llama 3 vocabulary ships
    offline): tiny answers 'unsafe' (S1) for 'zorblax', else 'safe'; full has Llama Guard 3
    1B's dimensions and untrained weights.
    Needs the 'export' extra (torch, transformers, onnx).
    """
    from guardcli.core.registry import load, synth_builders

    builders = synth_builders()
    if family not in builders:
        raise fail(f"Unknown family {family!r}.", f"Choose one of: {', '.join(builders)}.")
    if size not in SIZES:
        raise fail(f"Unknown size {size!r}.", f"Choose one of: {', '.join(SIZES)}.")
    check_out(out, force=force)
    console = stderr()

    def log(message: str) -> None:
        console.print(f"synth: {message}")

    builder = load(builders[family][1])
    path, kind = builder(
        out,
        name=family,
        size=size,
        seed=seed,
        log=log,
        pytorch=pytorch,
        base=base,
        arch=arch,
        multi_label=multi_label,
    )
    console.print(f"wrote {family} ({size}, {kind}) to {path}")
    typer.echo(str(path))
