"""Threshold sweeps on labelled scores: confusion, ROC/PR AUC, curves, operating points, CIs.

Pure numpy. "Flagged" means `score >= threshold`, exactly as the runtime decides. A metric whose
denominator is zero (precision with nothing flagged, recall with no positives, FPR with no
negatives, AUC with one class) is `None`, never 0 and never NaN: a number is either right or
absent. ROC AUC and average precision follow scikit-learn's definitions (ties counted as in
`roc_curve` / `precision_recall_curve`), and the tests check them against scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from guardcli.jobs.curves import (  # noqa: F401 - importable from here
    Confusion,
    Curve,
    average_precision,
    confusion,
    curve,
    roc_auc,
    thin_index,
)
from guardcli.jobs.labels import (  # noqa: F401 (re-exported: metrics.parse_label, ...)
    FALSE_WORDS,
    TRUE_WORDS,
    PositiveRule,
    parse_label,
)

RULES = ("best_f1", "target_recall", "target_precision", "max_fpr", "zero_fp")


# -- operating points -----------------------------------------------------------------------------


def _point(c: Curve, rule: str, index: np.ndarray, pick: str, target: float | None) -> dict | None:
    """The point at the highest or lowest threshold of `index` (positions meeting a rule)."""
    if not len(index):
        return None
    i = int(index[0] if pick == "highest" else index[-1])
    return {"rule": rule, "target": target, **c.at(i).to_dict()}


def operating_points(
    c: Curve,
    *,
    target_recall: float | None = None,
    target_precision: float | None = None,
    max_fpr: float | None = None,
) -> dict[str, dict[str, Any] | None]:
    """Named thresholds on the curve; None where no threshold meets the rule.

    best_f1: the highest F1 (the highest threshold among equals). target_recall: the highest
    threshold whose recall >= R. target_precision: the lowest threshold (the most recall) whose
    precision >= P. max_fpr: the lowest threshold whose FPR <= F. zero_fp: the lowest threshold
    with no false positive.
    """
    if not len(c):
        return dict.fromkeys(RULES)
    eps = 1e-12  # targets like 0.99 must not miss 99/100 by a rounding error
    out: dict[str, dict[str, Any] | None] = {}
    f1 = c.f1()
    best = np.flatnonzero(f1 == f1.max()) if c.positives else np.array([], dtype=int)
    out["best_f1"] = _point(c, "best_f1", best, "highest", None)
    if target_recall is not None:
        ok = np.flatnonzero(c.recall() >= target_recall - eps) if c.positives else np.array([])
        out["target_recall"] = _point(c, "target_recall", ok, "highest", target_recall)
    if target_precision is not None:
        ok = np.flatnonzero(c.precision() >= target_precision - eps)
        out["target_precision"] = _point(c, "target_precision", ok, "lowest", target_precision)
    if max_fpr is not None:
        ok = np.flatnonzero(c.fpr() <= max_fpr + eps) if c.negatives else np.arange(len(c))
        out["max_fpr"] = _point(c, "max_fpr", ok, "lowest", max_fpr)
    out["zero_fp"] = _point(c, "zero_fp", np.flatnonzero(c.fp == 0), "lowest", None)
    return out


# -- uncertainty and groups -----------------------------------------------------------------------


def bootstrap_ci(
    at: Confusion, n_boot: int, *, seed: int = 0, level: float = 0.95
) -> dict[str, dict[str, float | None]]:
    """Percentile bootstrap CIs for recall, precision and FPR at one threshold.

    Resampling n records with replacement draws the four confusion cells from a multinomial
    with the observed proportions, so the cells are drawn directly: the same distribution as
    resampling indices, in O(n_boot) memory. Replicates where a metric is undefined are skipped.
    """
    counts = np.array([at.tp, at.fp, at.tn, at.fn], dtype=np.int64)
    n = int(counts.sum())
    draws = np.random.default_rng(seed).multinomial(n, counts / n, size=n_boot).T.astype(float)
    tp, fp, tn, fn = draws
    with np.errstate(divide="ignore", invalid="ignore"):
        samples = {"recall": tp / (tp + fn), "precision": tp / (tp + fp), "fpr": fp / (fp + tn)}
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out: dict[str, dict[str, float | None]] = {}
    for name, values in samples.items():
        values = values[np.isfinite(values)]
        value = getattr(at, name)
        if value is None or not len(values):
            out[name] = {"value": value, "low": None, "high": None}
        else:
            low, high = np.percentile(values, [lo, hi])
            out[name] = {"value": value, "low": float(low), "high": float(high)}
    return out


def group_breakdown(
    labels: np.ndarray, scores: np.ndarray, keys: Sequence[str], threshold: float
) -> list[dict[str, Any]]:
    """Per group: n, positives, recall, precision and FPR at the threshold; worst first.

    Worst means the lowest recall (groups without positives last), then the highest FPR.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    groups = np.asarray(keys, dtype=object)
    rows = []
    for key in sorted(set(keys)):
        mask = groups == key
        c = confusion(y[mask], s[mask], threshold)
        rows.append(
            {
                "group": key,
                "n": int(mask.sum()),
                "positives": int(y[mask].sum()),
                "recall": c.recall,
                "precision": c.precision,
                "fpr": c.fpr,
                "tp": c.tp,
                "fp": c.fp,
                "fn": c.fn,
            }
        )

    def worst_first(row: dict[str, Any]) -> tuple[float, float, str]:
        recall = math.inf if row["recall"] is None else row["recall"]
        return (recall, -(row["fpr"] or 0.0), row["group"])

    return sorted(rows, key=worst_first)


# -- the whole sweep ------------------------------------------------------------------------------


def sweep(
    labels: Sequence[bool] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    *,
    threshold: float = 0.5,
    points: int | None = None,
    target_recall: float | None = None,
    target_precision: float | None = None,
    max_fpr: float | None = None,
    bootstrap: int = 0,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Everything `guard sweep` reports for one binary problem, as plain JSON-ready data.

    Scores that are NaN or missing are left out and counted in `excluded`; every undefined
    number is None and `notes` says why.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray([math.nan if v is None else v for v in scores], dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"{len(y)} labels but {len(s)} scores")
    keep = np.isfinite(s)
    notes = []
    excluded = int((~keep).sum())
    if excluded:
        notes.append(f"{excluded} record(s) without a finite score were left out")
    y, s = y[keep], s[keep]
    c = curve(y, s)
    if not len(s):
        notes.append("no scored records: nothing to measure")
    elif not c.negatives:
        notes.append("every record is positive: ROC AUC and FPR are undefined (null)")
    elif not c.positives:
        notes.append("every record is negative: ROC AUC, PR AUC and recall are undefined (null)")
    at = confusion(y, s, threshold)
    report: dict[str, Any] = {
        "n": int(len(s)),
        "positives": c.positives,
        "negatives": c.negatives,
        "excluded": excluded,
        "distinct_scores": len(c),
        "roc_auc": roc_auc(c),
        "pr_auc": average_precision(c),
        "threshold": float(threshold),
        "at_threshold": at.to_dict(),
        "operating_points": operating_points(
            c, target_recall=target_recall, target_precision=target_precision, max_fpr=max_fpr
        ),
    }
    for name, point in report["operating_points"].items():
        if point is None:
            notes.append(f"no threshold meets the {name} rule")
    if bootstrap and len(s):
        report["bootstrap"] = {
            "n": bootstrap,
            "seed": seed,
            "level": 0.95,
            **bootstrap_ci(at, bootstrap, seed=seed),
        }
    if groups is not None:
        kept_groups = [g for g, k in zip(groups, keep, strict=True) if k]
        report["groups"] = group_breakdown(y, s, kept_groups, threshold)
    report["curve"] = c.rows(points)
    report["notes"] = notes
    return report


def pick_threshold(report: dict[str, Any], rule: str) -> float | None:
    """The threshold a sweep report's operating point `rule` chose, or None."""
    point = report["operating_points"].get(rule)
    return None if point is None else point["threshold"]
