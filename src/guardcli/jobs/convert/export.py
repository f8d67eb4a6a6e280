"""`guard export`: a local checkpoint -> ONNX, by the family's export recipe."""

from __future__ import annotations

from pathlib import Path

from guardcli.core.errors import input_error
from guardcli.families.qwen3guard_gen import export as export_causal
from guardcli.families.qwen3guard_gen.export import (
    CAUSAL_FAMILIES,
    export_causal_checkpoint,
    is_causal_lm,
)
from guardcli.families.seqcls.export import EXPORT_FAMILIES, export_seqcls_checkpoint
from guardcli.runtime.export_common import CHECK_PROMPTS, ExportResult


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
    """Export `src` to `out` (CSAM-Guard layout) and check it against PyTorch.

    A causal LM (config architectures *ForCausalLM, or `family` a generative family) goes to
    `export_causal.export_causal_checkpoint` instead: the KV-cache layout its family runs.

    `max_length` (recorded in config.json) defaults to model_config.json's, else the tokenizer's
    model_max_length when it is a real limit, else 384. `tolerance` defaults to 1e-4 for
    classifiers and 1e-3 for causal LMs.

    Raises GuardError (exit 3) when max |Δ logit| is above `tolerance`; the files stay for a look.
    """
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not src.is_dir():
        raise input_error(f"{src} is not a folder.")
    if out.resolve() == src.resolve():
        raise input_error("--out must be another folder than the source.")
    if family is not None and family not in (*CAUSAL_FAMILIES, *EXPORT_FAMILIES):
        raise input_error(
            f"Unknown --family {family!r}.",
            f"Choose one of: {', '.join((*EXPORT_FAMILIES, *CAUSAL_FAMILIES))}.",
        )
    causal = family in CAUSAL_FAMILIES if family else is_causal_lm(src)
    if causal:
        if max_length is not None:
            raise input_error("--max-length applies to classifiers, not to a causal LM.")
        return export_causal_checkpoint(
            src,
            out,
            family=family,
            tolerance=export_causal.DEFAULT_TOLERANCE if tolerance is None else tolerance,
            log=log,
        )
    return export_seqcls_checkpoint(
        src, out, tolerance=tolerance, max_length=max_length, prompts=prompts, log=log
    )
