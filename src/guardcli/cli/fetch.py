"""`guard fetch`: download only the files a model variant needs, or import a copied folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from guardcli.cli._options import CacheDirOpt, QuietOpt, VerboseOpt
from guardcli.cli._output import handle_errors, stderr

EPILOG = (
    "Honours HF_HOME, HF_HUB_CACHE, HF_ENDPOINT (mirrors), HF_TOKEN and HF_HUB_OFFLINE. "
    "A dropped connection resumes where it stopped; re-running fetches only what is missing.\n\n"
    "Examples:\n\n"
    "  guard fetch csam-guard                      # the variant this CPU runs best\n\n"
    "  guard fetch csam-guard --variant int8 --revision main\n\n"
    "  guard fetch csam-guard --from /media/usb/Qwen3-CSAM-Guard   # air-gapped host"
)


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@handle_errors
def fetch(
    model: Annotated[str, typer.Argument(help="Catalog name (see `guard models`).")],
    *,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="auto|fp32|fp16|int8|all (or the model's own variants, e.g. bf16). "
            "auto: the one this CPU runs best (see `guard probe-cpu`).",
        ),
    ] = "auto",
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch, tag or commit. Default: main.")
    ] = None,
    cache_dir: CacheDirOpt = None,
    from_dir: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Import this copied model folder into the cache instead of downloading "
            "(air-gapped hosts).",
            file_okay=False,
        ),
    ] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Download a model variant into the Hugging Face cache: only its ONNX file (and external
    data), the tokenizer and the config files travel. Prints the snapshot folder on stdout.

    Afterwards `--model NAME` finds it with no network call.
    """
    from guardcli.core.hub import fetch as fetch_model
    from guardcli.core.hub import import_folder

    console = stderr()
    if from_dir is not None:
        result = import_folder(model, from_dir, variant, revision=revision, cache_dir=cache_dir)
    else:
        if not quiet:
            console.print(f"fetching {model} ({variant}) …")
        result = fetch_model(
            model,
            variant,
            revision=revision,
            cache_dir=cache_dir,
            progress=not quiet and console.is_terminal,  # bars are for people, on a terminal
        )
        if result.needs_export:
            from guardcli.jobs.convert.fetched import export_fetched

            log = (lambda m: None) if quiet else (lambda m: console.print(m, markup=False))
            result = export_fetched(result, log=log)
    if not quiet:
        how = f"imported from {result.imported_from}" if result.imported_from else "downloaded"
        console.print(
            f"{result.name} ({', '.join(result.variants)}): {len(result.files)} files, "
            f"{_size(result.total_bytes)}, {how} into {result.path}"
        )
        for rel in result.files:
            console.print(f"  {rel}")
    if result.synthetic:
        console.print(
            f"note: {result.imported_from} is a synthetic model (random weights, made by "
            "`guard synth`); its verdicts mean nothing. The cache keeps it marked as one.",
            markup=False,
        )
    typer.echo(str(result.path))
