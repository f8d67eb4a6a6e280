"""The rows of a `guard bench` report: rates and latency percentiles from a worker's batches,
ratios to FP32, and agreement with the reference variant."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

DEFINITIONS = {
    "mode": "how the model ran (generative guards): generate = greedy decoding to EOS or 128 "
    "new tokens, the verdict from its text (classify --no-score); score = score mode alone, "
    "one forward pass over the input and 'Safety:' (load_guard(..., generate=False)); "
    "null for families with one way to run",
    "prompts_per_s": "prompts / seconds inside the model call (model only: the onnxruntime or "
    "OpenVINO session, the whole greedy generation, or the torch forward pass)",
    "tokens_per_s": "real (unpadded) input tokens / seconds inside the model call; for a "
    "generative guard the input is the rendered chat template",
    "generated_tokens_per_s": "generate mode: new tokens (EOS included) / seconds inside "
    "generation; e2e_generated_tokens_per_s the same over the whole classify path",
    "reused_tokens": "input tokens whose keys and values a template head computed once "
    "supplied (prefix reuse of the generative and dialogue families): in tokens_per_s, but "
    "not computed per prompt",
    "p50_ms": "per request: a batch's model call time divided by its prompts; p95, p99 alike",
    "batch_p50_ms": "per batch: one model call for batch_size prompts; p95, p99 alike",
    "e2e_prompts_per_s": "prompts / seconds of the whole classify path, tokenization included",
    "load_s": "loading this variant: onnxruntime graph optimization or OpenVINO compilation "
    "(or their cached result), or torch building the model from its weights",
    "peak_rss_mb": "peak resident memory (VmHWM) of the process that held only this variant, "
    "interpreter and runtime included; base_rss_mb is that process before loading it",
    "size_mb": "the graph plus its weights on disk (ONNX external data, OpenVINO .bin; "
    "safetensors for torch; adapter, head and base model for an OpenCC LoRA)",
    "ratio_to_fp32": "prompts_per_s / FP32's prompts_per_s at the same batch size and mode",
    "usd_per_1m_tokens": "price_per_hour / (e2e_tokens_per_s * 3600) * 1e6",
    "max_abs_diff_vs_ref": "largest |score - reference score| over the first "
    "settings.agreement_prompts prompts, in the same mode; the reference is "
    "settings.reference, the first variant (FP32 when it runs); null where there are no "
    "scores (generate mode)",
    "flag_agreement_vs_ref": "share of those prompts flagged the same as by the reference",
    "severity_agreement_vs_ref": "generate mode: share of those prompts given the same "
    "severity (Safe, Controversial, Unsafe; unparsable output counts as its own answer)",
    "max_abs_diff_vs_fp32": "max_abs_diff_vs_ref when the reference is FP32, else null; "
    "flag_agreement_vs_fp32 alike",
}


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def make_row(
    variant: str,
    runtime: str,
    mode: str | None,
    batch_size: int,
    samples: list[list[float]],
    setup: dict[str, Any],
    peak_rss_mb: float | None,
    size_bytes: int,
    price_per_hour: float | None,
) -> dict[str, Any]:
    """One row from a worker's batches: (prompts, real tokens, padded tokens, model seconds,
    end-to-end seconds, generated tokens) each."""
    prompts = sum(s[0] for s in samples)
    real = sum(s[1] for s in samples)
    padded = sum(s[2] for s in samples)
    model_s = sum(s[3] for s in samples)
    e2e_s = sum(s[4] for s in samples)
    generated = sum(s[5] for s in samples)
    reused = sum(s[7] for s in samples if len(s) > 7)
    per_prompt = [1000 * s[3] / s[0] for s in samples]
    per_batch = [1000 * s[3] for s in samples]
    e2e_per_prompt = [1000 * s[4] / s[0] for s in samples]
    e2e_tokens_per_s = real / e2e_s
    row: dict[str, Any] = {
        "variant": variant,
        "mode": mode,
        "backend": f"{runtime}-cpu",
        "batch_size": batch_size,
        "prompts_per_s": prompts / model_s,
        "tokens_per_s": real / model_s,
        "p50_ms": percentile(per_prompt, 50),
        "p95_ms": percentile(per_prompt, 95),
        "p99_ms": percentile(per_prompt, 99),
        "batch_p50_ms": percentile(per_batch, 50),
        "batch_p95_ms": percentile(per_batch, 95),
        "batch_p99_ms": percentile(per_batch, 99),
        "e2e_prompts_per_s": prompts / e2e_s,
        "e2e_tokens_per_s": e2e_tokens_per_s,
        "e2e_p50_ms": percentile(e2e_per_prompt, 50),
        "e2e_p95_ms": percentile(e2e_per_prompt, 95),
        "e2e_p99_ms": percentile(e2e_per_prompt, 99),
        "load_s": setup["load_s"],
        "peak_rss_mb": peak_rss_mb,
        "base_rss_mb": setup.get("base_rss_mb"),
        "size_mb": size_bytes / 1e6,
        "batches": len(samples),
        "prompts": prompts,
        "tokens": real,
        "reused_tokens": reused,
        "padding_share": 1 - real / padded if padded else 0.0,
        "measured_s": model_s,
    }
    if mode == "generate":
        row["generated_tokens"] = generated
        row["generated_tokens_per_s"] = generated / model_s
        row["e2e_generated_tokens_per_s"] = generated / e2e_s
    if price_per_hour is not None:
        row["usd_per_1m_tokens"] = price_per_hour / (e2e_tokens_per_s * 3600) * 1e6
    return row


def add_ratios(rows: list[dict[str, Any]], sizes: dict[str, int]) -> None:
    """Each row against FP32 at the same batch size and mode (None when FP32 was not run), and
    a `winner` flag on the fastest variant of each batch size and mode."""
    groups: dict[tuple[str | None, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["mode"], row["batch_size"]), []).append(row)
    for group in groups.values():
        base = next((r for r in group if r["variant"] == "fp32"), None)
        best = max(group, key=lambda r: r["prompts_per_s"])
        for row in group:
            row["ratio_to_fp32"] = row["prompts_per_s"] / base["prompts_per_s"] if base else None
            row["e2e_ratio_to_fp32"] = (
                row["e2e_prompts_per_s"] / base["e2e_prompts_per_s"] if base else None
            )
            row["size_ratio_to_fp32"] = (
                sizes[row["variant"]] / sizes["fp32"] if "fp32" in sizes else None
            )
            row["winner"] = row is best


def add_agreement(
    rows: list[dict[str, Any]],
    reference: str,
    judged: dict[str, dict[str, list[dict[str, Any]]]],
) -> None:
    """Each row's agreement with the reference variant on the same prompts in the same mode,
    so a faster path is never bought with silent drift. `judged`: variant -> mode ("" for
    none) -> [{"score", "flagged", "severity"}] per prompt."""
    for row in rows:
        mode = row["mode"] or ""
        base, mine = judged[reference].get(mode), judged[row["variant"]].get(mode)
        out: dict[str, float | None] = dict.fromkeys(
            ("max_abs_diff_vs_ref", "flag_agreement_vs_ref", "severity_agreement_vs_ref")
        )
        if base and mine and len(base) == len(mine):
            pairs = list(zip(mine, base, strict=True))
            diffs = [
                abs(a["score"] - b["score"])
                for a, b in pairs
                if a["score"] is not None and b["score"] is not None
            ]
            out["max_abs_diff_vs_ref"] = max(diffs) if diffs else None
            out["flag_agreement_vs_ref"] = _share(a["flagged"] == b["flagged"] for a, b in pairs)
            if any(b["severity"] is not None for b in base):
                out["severity_agreement_vs_ref"] = _share(
                    a["severity"] == b["severity"] for a, b in pairs
                )
        if row["mode"] != "generate":
            del out["severity_agreement_vs_ref"]
        row.update(out)
        fp32 = reference == "fp32"
        row["max_abs_diff_vs_fp32"] = out["max_abs_diff_vs_ref"] if fp32 else None
        row["flag_agreement_vs_fp32"] = out["flag_agreement_vs_ref"] if fp32 else None


def _share(same: Iterable[bool]) -> float:
    values = list(same)
    return sum(values) / len(values)
