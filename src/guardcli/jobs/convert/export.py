"""`guard export`: a local checkpoint -> ONNX, by the export recipe of the family it belongs to."""

from __future__ import annotations

from pathlib import Path

from guardcli.core import registry
from guardcli.core.errors import input_error
from guardcli.runtime.export_common import CHECK_PROMPTS, ExportResult


def export_family(src: Path, family: str | None) -> registry.Family:
    """The family whose recipe exports `src`: one whose files claim it outright (an in-place
    export), else the one named, else the first whose `exports` claims the checkpoint, else the
    one that claims nothing (the classifiers')."""
    exporters = sorted(
        (f for f in registry.families().values() if f.export), key=lambda f: f.priority
    )

    def claims(candidate: registry.Family) -> bool:
        return candidate.exports is not None and bool(registry.load(candidate.exports)(src))

    for candidate in exporters:
        if candidate.export_in_place and claims(candidate):
            return candidate
    if family is not None:
        for candidate in exporters:
            if candidate.name == family and not candidate.export_in_place:
                return candidate
        choices = [
            f.name for f in registry.families().values() if f.export and not f.export_in_place
        ]
        raise input_error(f"Unknown --family {family!r}.", f"Choose one of: {', '.join(choices)}.")
    for candidate in exporters:
        if claims(candidate):
            return candidate
    return next(f for f in exporters if not f.exports)


def export_checkpoint(
    src: Path,
    out: Path | None,
    *,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] = CHECK_PROMPTS,
    family: str | None = None,
    log=lambda _: None,
) -> ExportResult:
    """Export `src` to `out` in the layout its family runs, and check it against PyTorch.

    `family` names the recipe; None: the family whose recipe claims the checkpoint (a causal LM
    goes to the generative family's KV-cache layout), else the classifiers'. A family that
    exports in place (OpenCC: the graph goes into SRC/onnx/) needs no `out`.

    `max_length` (recorded in config.json) defaults to model_config.json's, else the tokenizer's
    model_max_length when it is a real limit, else 384. `tolerance` defaults to the family's
    (1e-4 for classifiers, 1e-3 for causal LMs).

    Raises GuardError (exit 3) when max |Δ logit| is above `tolerance`; the files stay for a look.
    """
    src = Path(src).expanduser()
    if not src.is_dir():
        raise input_error(f"{src} is not a folder.")
    chosen = export_family(src, family)
    if out is None and not chosen.export_in_place:
        raise input_error("Missing option --out.", "Say where to write the model: --out DIR.")
    if out is not None:
        out = Path(out).expanduser()
        if not chosen.export_in_place and out.resolve() == src.resolve():
            raise input_error("--out must be another folder than the source.")
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
