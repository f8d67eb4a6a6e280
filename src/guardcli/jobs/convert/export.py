"""`guard export`: a local checkpoint -> ONNX, by the export recipe of the family it belongs to."""

from __future__ import annotations

from pathlib import Path

from guardcli.core import registry
from guardcli.core.errors import input_error
from guardcli.runtime.export_common import CHECK_PROMPTS, ExportResult


def export_family(src: Path, family: str | None) -> registry.Family:
    """The family whose recipe exports `src`: the one named, else the first whose `exports`
    claims the checkpoint, else the one that claims nothing (the classifiers')."""
    exporters = [f for f in registry.families().values() if f.export]
    if family is not None:
        for candidate in exporters:
            if candidate.name == family:
                return candidate
        raise input_error(
            f"Unknown --family {family!r}.",
            f"Choose one of: {', '.join(f.name for f in exporters)}.",
        )
    for candidate in exporters:
        if candidate.exports and registry.load(candidate.exports)(src):
            return candidate
    return next(f for f in exporters if not f.exports)


def export_checkpoint(
    src: Path,
    out: Path,
    *,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] = CHECK_PROMPTS,
    family: str | None = None,
    log=lambda _: None,
) -> ExportResult:
    """Export `src` to `out` in the layout its family runs, and check it against PyTorch.

    `family` names the family's recipe; None: the family whose recipe claims the checkpoint
    (a causal LM goes to the generative family's KV-cache layout), else the classifiers'.

    `max_length` (recorded in config.json) defaults to model_config.json's, else the tokenizer's
    model_max_length when it is a real limit, else 384. `tolerance` defaults to the family's
    (1e-4 for classifiers, 1e-3 for causal LMs).

    Raises GuardError (exit 3) when max |Δ logit| is above `tolerance`; the files stay for a look.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise input_error(f"{src} is not a folder.")
    if out.resolve() == src.resolve():
        raise input_error("--out must be another folder than the source.")
    chosen = export_family(src, family)
    recipe = registry.load(chosen.export or "")
    return recipe(
        src,
        out,
        family=family,
        tolerance=tolerance,
        max_length=max_length,
        prompts=prompts,
        log=log,
    )
