"""`guard export` on an OpenCC folder (weight_frame.json): kept apart from cli/export.py, which
only dispatches here."""

from __future__ import annotations

from pathlib import Path

import typer

from guardcli.cli._output import stderr


def export_opencc_folder(src: Path, out: Path | None, *, tolerance: float | None) -> None:
    """Merge the LoRA, export to ONNX, check against torch + peft; print the folder on stdout."""
    from guardcli.families.opencc.export import DEFAULT_TOLERANCE, export_opencc

    console = stderr()
    result = export_opencc(
        src,
        out,
        tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
        log=lambda m: console.print(f"export: {m}", markup=False),
    )
    console.print(
        f"max |Δ logit| {result.max_abs_diff:.3g} against torch + peft on {result.prompts} "
        f"prompts (tolerance {result.tolerance:g}): ok",
        markup=False,
    )
    console.print(
        f"wrote {result.graph} ({result.bytes / 2**20:.1f} MiB, {result.kind} with the "
        "LoRA merged); run it with --backend onnxruntime",
        markup=False,
    )
    typer.echo(str(result.out))
