"""`guard compare`: how far a model folder's FP16/INT8 variants drift from its FP32 graph.

Every figure is measured against FP32 on the same records, with the same threshold:

- decision flips: records whose flagged/allowed decision differs from FP32 (count, rate, ids);
- |Δscore|: max and 99th percentile (numpy's linear interpolation) of |score - FP32 score|;
- with labels: each variant's recall and precision, and their change from FP32;
- stability: each record is re-scored with harmless perturbations and the decision compared with
  the same variant's decision on the original text. OpenCC's notes report that a trailing newline
  pushed benign prompts to 0.98, and a shipped ONNX jailbreak model flagged 100% of benign
  prompts (NeMo-Guardrails #2364): a variant that fails here must not ship.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guardcli.core.catalog import VARIANTS
from guardcli.core.errors import input_error
from guardcli.core.variants import ALL_VARIANTS
from guardcli.core.verdicts import Record
from guardcli.jobs import metrics

BASELINE = "fp32"


def _trailing_newline(text: str) -> str:
    return text + "\n"


def _double_space(text: str) -> str:
    return text.replace(" ", "  ")


def _case(text: str) -> str:
    """Lower case; upper case for text that is already lower case (or has no case)."""
    lower = text.lower()
    return lower if lower != text else text.upper()


# name -> text transform. A record whose text a perturbation leaves unchanged is not counted.
PERTURBATIONS: dict[str, Callable[[str], str]] = {
    "trailing_newline": _trailing_newline,
    "double_space": _double_space,
    "case": _case,
}


@dataclass(frozen=True)
class CompareOptions:
    variants: tuple[str, ...] = VARIANTS
    threshold: float | None = None  # None: the model's
    label_field: str = "label"
    stability: bool = True
    batch_size: int | None = None
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the family's (--long, --policy...)


def parse_variants(text: str | Iterable[str]) -> tuple[str, ...]:
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = [v.strip().lower() for v in items if v.strip()]
    bad = [v for v in chosen if v not in ALL_VARIANTS]
    if bad or not chosen:
        raise input_error(
            f"Unknown variant {', '.join(bad) or '(none)'} in --variants.",
            f"Choose from: {', '.join(ALL_VARIANTS)} (comma separated).",
        )
    # FP32 is the reference: always scored, always first.
    return tuple(dict.fromkeys([BASELINE, *chosen]))


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def decision_flips(ids: list[Any], base: np.ndarray, other: np.ndarray) -> dict[str, Any]:
    """Where `other` decides differently from `base` (boolean arrays, same order)."""
    flipped = np.flatnonzero(base != other)
    return {
        "count": int(flipped.size),
        "rate": _ratio(flipped.size, len(ids)),
        "to_flagged": int(np.sum(~base & other)),
        "to_allowed": int(np.sum(base & ~other)),
        "ids": [ids[i] for i in flipped],
    }


def score_deltas(base: np.ndarray, other: np.ndarray) -> dict[str, float | None]:
    if base.size == 0:
        return {"max": None, "p99": None, "mean": None}
    delta = np.abs(other - base)
    return {
        "max": float(delta.max()),
        "p99": float(np.percentile(delta, 99)),
        "mean": float(delta.mean()),
    }


def _score(guard, records: list[Record]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """(scores, flagged, error ids) for records, in order; errors score NaN."""
    verdicts = guard.classify_records(records)
    scores = np.array(
        [np.nan if v.score is None or v.error is not None else v.score for v in verdicts],
        dtype=np.float64,
    )
    flagged = np.array([bool(v.flagged) for v in verdicts])
    errors = [v.id for v in verdicts if v.error is not None]
    return scores, flagged, errors


def _labels(records: list[Record], field: str) -> list[bool | None]:
    out: list[bool | None] = []
    for r in records:
        value = r.fields.get(field) if r.fields else None
        try:
            out.append(None if value is None else metrics.parse_label(value))
        except ValueError:
            out.append(None)
    return out


def _perturbed(records: list[Record], transform: Callable[[str], str]):
    """(indices changed, perturbed records) for records with text."""
    index, out = [], []
    for i, r in enumerate(records):
        if r.text is None:
            continue
        text = transform(r.text)
        if text == r.text:
            continue
        index.append(i)
        out.append(Record(id=r.id, text=text, line=r.line))
    return index, out


def compare_variants(
    model_dir,
    records: Iterable[Record],
    opts: CompareOptions = CompareOptions(),
    *,
    load_guard: Callable[..., Any] | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The comparison report (a JSON-able dict) of `opts.variants` against FP32."""
    if load_guard is None:
        from guardcli.families.loader import load_guard as default_loader

        load_guard = default_loader
    records = list(records)
    if not records:
        raise input_error("The input is empty: nothing to compare on.")
    variants = parse_variants(opts.variants)
    guards = {}
    for v in variants:
        guards[v] = load_guard(
            model_dir,
            variant=v,
            threshold=opts.threshold,
            batch_size=opts.batch_size,
            threads=opts.threads,
            **opts.options,
        )
    for v in variants[1:]:
        # One folder, one tokenizer: loading Qwen's tokenizer.json once saves ~1 s per variant.
        if guards[v].max_length == guards[BASELINE].max_length:
            guards[v].tokenizer = guards[BASELINE].tokenizer
    threshold = float(guards[BASELINE].threshold)
    runs = {}
    for v, guard in guards.items():
        log(f"scoring {len(records)} records with {v}")
        runs[v] = _score(guard, records)
    # Only records every variant could score count (a bad record is an error for all of them).
    bad = np.zeros(len(records), dtype=bool)
    for scores, _, _ in runs.values():
        bad |= np.isnan(scores)
    keep = np.flatnonzero(~bad)
    ids = [records[i].id for i in keep]
    labels = _labels(records, opts.label_field)
    labelled = np.array([labels[i] is not None for i in keep], dtype=bool)
    truth = np.array([bool(labels[i]) for i in keep], dtype=bool)

    base_scores, base_flags, _ = runs[BASELINE]
    report: dict[str, Any] = {
        "model": str(model_dir),
        "n": int(keep.size),
        "excluded": int(bad.sum()),
        "excluded_ids": [records[i].id for i in np.flatnonzero(bad)],
        "threshold": threshold,
        "labelled": int(labelled.sum()),
        "baseline": BASELINE,
        "variants": {},
        "perturbations": list(PERTURBATIONS) if opts.stability else [],
        "notes": [],
    }
    base_quality: dict[str, float | None] = {}
    for v in variants:
        scores, flags, _ = runs[v]
        s, f = scores[keep], flags[keep]
        entry: dict[str, Any] = {"file": str(guards[v].model.graph.name)}
        if v != BASELINE:
            entry["flips"] = decision_flips(ids, base_flags[keep], f)
            entry["delta"] = score_deltas(base_scores[keep], s)
        if labelled.any():
            c = metrics.confusion(truth[labelled], s[labelled], threshold)
            quality = {"recall": c.recall, "precision": c.precision}
            entry.update(quality)
            entry["confusion"] = {"tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn}
            if v == BASELINE:
                base_quality = quality
            else:
                entry["recall_change"] = _delta(c.recall, base_quality["recall"])
                entry["precision_change"] = _delta(c.precision, base_quality["precision"])
        if opts.stability:
            entry["stability"] = _stability(guards[v], records, scores, flags, bad, log, v)
        report["variants"][v] = entry
    if not labelled.any():
        report["notes"].append(
            f"no record has a '{opts.label_field}' field: recall and precision are not reported"
        )
    elif labelled.sum() < keep.size:
        report["notes"].append(
            f"{int(keep.size - labelled.sum())} record(s) without a label are left out of "
            "recall and precision"
        )
    if bad.any():
        report["notes"].insert(0, f"{int(bad.sum())} record(s) could not be scored: left out")
    return report


def _stability(guard, records, scores, flags, bad, log, variant) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, transform in PERTURBATIONS.items():
        index, perturbed = _perturbed(records, transform)
        pairs = [(i, r) for i, r in zip(index, perturbed, strict=True) if not bad[i]]
        if not pairs:
            out[name] = {"n": 0, "flips": 0, "rate": None, "to_flagged": 0, "ids": []}
            continue
        log(f"stability: {name} with {variant} on {len(pairs)} records")
        p_scores, p_flags, _ = _score(guard, [r for _, r in pairs])
        idx = np.array([i for i, _ in pairs])
        ok = ~np.isnan(p_scores)
        base_f, base_s = flags[idx][ok], scores[idx][ok]
        new_f, new_s = p_flags[ok], p_scores[ok]
        flipped = np.flatnonzero(base_f != new_f)
        kept_ids = [records[i].id for i in idx[ok]]
        out[name] = {
            "n": int(ok.sum()),
            "flips": int(flipped.size),
            "rate": _ratio(flipped.size, int(ok.sum())),
            "to_flagged": int(np.sum(~base_f & new_f)),
            "max_delta": float(np.abs(new_s - base_s).max()) if ok.any() else None,
            "ids": [kept_ids[i] for i in flipped],
        }
    return out


def worst_flip_rate(report: dict[str, Any]) -> float:
    """The highest decision-flip rate of any variant against FP32 (0 when none)."""
    rates = [e["flips"]["rate"] or 0.0 for e in report["variants"].values() if "flips" in e]
    return max(rates, default=0.0)
