"""The threshold report of a sweep: binary and per-category curves, operating points, groups."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from guardcli.core.errors import input_error
from guardcli.jobs import metrics

if TYPE_CHECKING:
    pass

from guardcli.jobs.sweep_examples import (
    Example,
    SweepOptions,
)


def _binary_report(
    labels: list[bool],
    scores: list[float],
    opts: SweepOptions,
    threshold: float,
    groups: list[str] | None,
) -> dict[str, Any]:
    return metrics.sweep(
        labels,
        scores,
        threshold=threshold,
        points=None,
        target_recall=opts.target_recall,
        target_precision=opts.target_precision,
        max_fpr=opts.max_fpr,
        bootstrap=opts.bootstrap,
        seed=opts.seed,
        groups=groups,
    )


def build_report(examples: list[Example], opts: SweepOptions, threshold: float) -> dict[str, Any]:
    """The full sweep report over examples already read (and scored)."""
    used = [ex for ex in examples if ex.excluded is None]
    reasons = Counter(ex.excluded for ex in examples if ex.excluded is not None)
    if not used:
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "the input is empty"
        raise input_error(
            f"No record has both a label and a score ({detail}).",
            "Records need a label field (--label-field) and a 'score', or text to classify "
            "with --model.",
        )
    rule = opts.pick_rule()
    report = _binary_report(
        [bool(ex.label) for ex in used],
        [ex.score for ex in used],
        opts,
        threshold,
        [ex.group or "" for ex in used] if opts.group_by else None,
    )
    report["excluded"] = sum(reasons.values())
    report["excluded_reasons"] = dict(reasons.most_common())
    report["notes"] = [n for n in report["notes"] if "without a finite score" not in n]
    if reasons:
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        report["notes"].insert(0, f"{report['excluded']} record(s) left out: {detail}")
    report["pick"] = {"rule": rule, "threshold": metrics.pick_threshold(report, rule)}
    if opts.group_by:
        report["group_by"] = list(opts.group_by)
    categories = _category_reports(used, opts, threshold, rule)
    if categories is not None:
        report["categories"] = categories
        report["thresholds"] = {
            name: cat["pick"]["threshold"]
            for name, cat in categories.items()
            if cat["pick"]["threshold"] is not None
        }
        for name, cat in categories.items():
            if cat["pick"]["threshold"] is None:
                report["notes"].append(f"category {name!r}: no threshold meets the {rule} rule")
    return report


def _category_reports(
    used: list[Example], opts: SweepOptions, threshold: float, rule: str
) -> dict[str, dict[str, Any]] | None:
    names: dict[str, str] = {}  # casefolded -> as first seen
    for ex in used:
        for name in ex.categories or {}:
            names.setdefault(name.casefold(), name)
    if not names:
        return None
    out = {}
    for key, name in sorted(names.items(), key=lambda kv: kv[1]):
        labels, scores = [], []
        unknown = 0
        for ex in used:
            if not ex.categories:
                continue
            score = next((v for n, v in ex.categories.items() if n.casefold() == key), None)
            if score is None:
                continue
            if ex.truth is None:
                unknown += 1
                continue
            labels.append(ex.truth.get(key, False))
            scores.append(score)
        if not scores:
            continue
        cat = _binary_report(labels, scores, opts, threshold, None)
        if unknown:
            cat["notes"].insert(
                0, f"{unknown} positive record(s) without per-category labels were left out"
            )
        cat["excluded"] += unknown
        cat["pick"] = {"rule": rule, "threshold": metrics.pick_threshold(cat, rule)}
        out[name] = cat
    return out


# -- the job --------------------------------------------------------------------------------------
