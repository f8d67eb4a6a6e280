"""What `guard sweep` reads: its options, and each labelled record as an Example (scores,
labels, per-category truth). The record shapes are in sweep.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guardcli.core.errors import input_error
from guardcli.core.verdicts import Record
from guardcli.jobs import metrics

if TYPE_CHECKING:
    pass

LABEL_FIELD_FALLBACKS = ("label", "labels")
REPORT_ORDER = (
    "n",
    "positives",
    "negatives",
    "excluded",
    "excluded_reasons",
    "distinct_scores",
    "roc_auc",
    "pr_auc",
    "threshold",
    "threshold_source",
    "model",
    "at_threshold",
    "bootstrap",
    "operating_points",
    "pick",
    "group_by",
    "groups",
    "thresholds",
    "categories",
    "curve",
    "notes",
)
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class SweepOptions:
    label_field: str | None = None  # None: "label", falling back to "labels"
    positive: str | None = None  # a PositiveRule, e.g. "!Benign"
    threshold: float | None = None  # None: the model's, else the records', else 0.5
    points: int | None = None
    target_recall: float | None = None
    target_precision: float | None = None
    max_fpr: float | None = None
    pick: str | None = None  # the rule for `thresholds`; None: the target given, else best_f1
    bootstrap: int = 0
    seed: int = 0
    group_by: tuple[str, ...] = ()

    def pick_rule(self) -> str:
        if self.pick is not None:
            rule = self.pick.replace("-", "_")
            if rule not in metrics.RULES:
                raise input_error(
                    f"Unknown --pick rule {self.pick!r}.",
                    f"Choose one of: {', '.join(r.replace('_', '-') for r in metrics.RULES)}.",
                )
            target = {
                "target_recall": self.target_recall,
                "target_precision": self.target_precision,
                "max_fpr": self.max_fpr,
            }
            if rule in target and target[rule] is None:
                raise input_error(f"--pick {self.pick} needs --{rule.replace('_', '-')} VALUE.")
            return rule
        for rule, value in (
            ("target_recall", self.target_recall),
            ("target_precision", self.target_precision),
            ("max_fpr", self.max_fpr),
        ):
            if value is not None:
                return rule
        return "best_f1"


@dataclass
class Example:
    """One record as the sweep sees it: a score, a label, or why it was left out."""

    id: Any
    score: float = math.nan
    label: bool | None = None
    categories: dict[str, float] | None = None  # per-category scores
    truth: dict[str, bool] | None = None  # per-category labels; None: unknown
    group: str | None = None
    excluded: str | None = None  # the reason, when left out
    record: Record | None = field(default=None, repr=False)


@dataclass
class SweepResult:
    report: dict[str, Any]
    examples: list[Example]
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # full, for plots


# -- reading records ------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def category_scores(value: Any) -> dict[str, float] | None:
    """`{name: 0.9}` or `{name: {"score": 0.9, ...}}` -> {name: 0.9}; None if not that shape."""
    if not isinstance(value, dict) or not value:
        return None
    out = {}
    for name, item in value.items():
        score = _number(item.get("score") if isinstance(item, dict) else item)
        out[str(name)] = math.nan if score is None else score
    return out


def category_truth(value: Any, rule: metrics.PositiveRule | None) -> dict[str, bool] | None:
    """Per-category labels as {casefolded name: bool}; missing names are negative. None: unknown.

    `{}` means "no category applies"; None means "a positive record of unknown category".
    """
    if isinstance(value, dict):
        return {str(k).casefold(): metrics.parse_label(v) for k, v in value.items()}
    if isinstance(value, list):
        return {str(v).casefold(): True for v in value if isinstance(v, str)}
    if isinstance(value, str):
        word = value.strip().casefold()
        if rule is None and word in metrics.TRUE_WORDS:
            return None
        if rule is None and word in metrics.FALSE_WORDS:
            return {}
        return {word: True}
    if isinstance(value, bool | int | float):
        return None if value else {}
    return None


def read_example(record: Record, opts: SweepOptions, rule: metrics.PositiveRule | None) -> Example:
    obj = record.fields
    ex = Example(id=record.id, record=record)
    if not obj:
        ex.excluded = record.error.type if record.error else "not_json"
        return ex
    if opts.group_by:
        ex.group = " / ".join(str(obj.get(f, "(missing)")) for f in opts.group_by)
    names = (opts.label_field,) if opts.label_field else LABEL_FIELD_FALLBACKS
    name = next((n for n in names if n in obj), None)
    raw_label = obj.get(name) if name else None
    try:
        ex.label = None if raw_label is None else _binary_label(raw_label, rule)
    except ValueError:
        ex.label = None
    ex.categories = category_scores(obj.get("categories"))
    # Per-category truth: a `labels` field when there is one, else the label itself.
    ex.truth = category_truth(obj["labels"] if "labels" in obj else raw_label, rule)
    if "error" in obj and obj.get("score") is None:
        ex.excluded = "error_record"
    elif "score" in obj:
        score = _number(obj["score"])
        if score is None and obj["score"] is not None:
            ex.excluded = "bad_score"
        else:
            ex.score = math.nan if score is None else score
    elif ex.categories is not None:
        ex.score = max(ex.categories.values(), default=math.nan)
    else:
        ex.excluded = "unscored"  # for now: classified later if a model is at hand
    if ex.label is None and ex.excluded is None:
        ex.excluded = "missing_label" if raw_label is None else "bad_label"
    elif ex.excluded is None and not math.isfinite(ex.score):
        ex.excluded = "nan_score"
    return ex


def _binary_label(value: Any, rule: metrics.PositiveRule | None) -> bool:
    if isinstance(value, dict):
        return any(metrics.parse_label(v) for v in value.values())
    return metrics.parse_label(value, rule)


def label_problem(records: list[Example], opts: SweepOptions) -> str | None:
    """The first label parse error, worded for a person (for the note on bad labels)."""
    rule = metrics.PositiveRule.parse(opts.positive) if opts.positive else None
    for ex in records:
        if ex.excluded == "bad_label" and ex.record is not None:
            names = (opts.label_field,) if opts.label_field else LABEL_FIELD_FALLBACKS
            value = next((ex.record.fields[n] for n in names if n in ex.record.fields), None)
            try:
                _binary_label(value, rule)
            except ValueError as err:
                return f"line {ex.record.line}: {err}"
    return None
