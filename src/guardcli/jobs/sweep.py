"""The sweep job: labelled records (scored, or classified here) in, a threshold report out.

Record shapes `guard sweep` reads (one JSON object per line):

    {"id": "7", "text": "...", "label": 1}                     # classified with --model
    {"id": "7", "score": 0.93, "label": "unsafe"}             # a scores file (or classify output)
    {"id": "7", "categories": {"Violent": 0.91, "Sexual": {"score": 0.02}},
     "labels": ["Violent"]}                                    # multilabel

A label (`--label-field`, default `label`, else `labels`) is 0/1, true/false, safe/unsafe, a
category name judged by `--positive` ("!Benign", "Hate Speech,CBRN"), or a list of the categories
that apply (positive when non-empty). Multilabel truth per category comes from a `labels` field
when there is one, else the label: a list of the categories that apply (`[]`: none), one
category name, or `{name: 0|1}`; a plain negative label means no category applies, and a plain
positive one says nothing per category (that record is left out of category sweeps).
A record's overall score is its `score`, else the highest category score.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardcli.core.errors import input_error
from guardcli.core.strict_json import dumps
from guardcli.core.thresholds import parse_thresholds
from guardcli.core.verdicts import Record
from guardcli.jobs import metrics

if TYPE_CHECKING:
    from guardcli.families import Guard

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


def score_with_model(
    guard: Guard, examples: list[Example], on_batch: Callable[[int], None] | None = None
) -> int:
    """Classify the examples that had no score; returns how many were sent to the model."""
    todo = [ex for ex in examples if ex.excluded == "unscored" and ex.record is not None]
    if not todo:
        return 0
    verdicts = guard.classify_records([ex.record for ex in todo if ex.record], on_batch=on_batch)
    for ex, verdict in zip(todo, verdicts, strict=True):
        if verdict.error is not None:
            ex.excluded = verdict.error.type
            continue
        ex.categories = category_scores(verdict.categories)
        ex.score = math.nan if verdict.score is None else float(verdict.score)
        ex.excluded = None
        if ex.label is None:
            ex.excluded = "missing_label"
        elif not math.isfinite(ex.score):
            ex.excluded = "nan_score"
    return len(todo)


# -- the report -----------------------------------------------------------------------------------


def default_threshold(examples: list[Example], opts: SweepOptions, guard: Guard | None):
    """(threshold, where it came from)."""
    if opts.threshold is not None:
        return opts.threshold, "option"
    if guard is not None:
        return float(guard.threshold), "model"
    seen = {
        ex.record.fields.get("threshold")
        for ex in examples
        if ex.record is not None and ex.record.fields
    }
    if len(seen) == 1:
        only = _number(next(iter(seen)))
        if only is not None:
            return only, "records"
    return DEFAULT_THRESHOLD, "default"


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


def run_sweep(
    records: Iterable[Record],
    opts: SweepOptions,
    *,
    guard: Guard | None = None,
    load_guard: Callable[[], Guard] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_unscored: Callable[[int], None] | None = None,
) -> SweepResult:
    """Read labelled records, score those without a score, and measure.

    `guard` classifies records that carry text but no score; without one, `load_guard` is
    called the first time a record needs it (so a scores file never loads a model).
    `on_unscored(n)` is told how many records are about to be classified.
    """
    rule = None
    if opts.positive:
        try:
            rule = metrics.PositiveRule.parse(opts.positive)
        except ValueError as err:
            raise input_error(f"{err}.", "Example: --positive '!Benign'.") from None
    opts.pick_rule()  # reject a bad --pick before any model work
    examples = [read_example(r, opts, rule) for r in records]
    if not examples:
        raise input_error("The input is empty: nothing to sweep.")
    unscored = sum(ex.excluded == "unscored" for ex in examples)
    if unscored and guard is None and load_guard is not None:
        guard = load_guard()
    if unscored and guard is not None:
        if on_unscored:
            on_unscored(unscored)
        score_with_model(guard, examples, on_batch)
    threshold, source = default_threshold(examples, opts, guard)
    report = build_report(examples, opts, threshold)
    curves = {"": report["curve"]}
    report["curve"] = _thin(report["curve"], opts.points)
    for name, cat in report.get("categories", {}).items():
        curves[name] = cat["curve"]
        cat["curve"] = _thin(cat["curve"], opts.points)
    report["threshold_source"] = source
    if guard is not None:
        report["model"] = {"name": guard.name, "variant": guard.variant}
    problem = label_problem(examples, opts)
    if problem:
        report["notes"].append(problem)
    order = [k for k in REPORT_ORDER if k in report] + [k for k in report if k not in REPORT_ORDER]
    return SweepResult({k: report[k] for k in order}, examples, curves)


def _thin(rows: list[dict[str, Any]], points: int | None) -> list[dict[str, Any]]:
    return [rows[i] for i in metrics.thin_index(len(rows), points)]


def write_scores(examples: list[Example], path: Path, opts: SweepOptions) -> int:
    """`--scores-out`: one JSON line per input record (id, score, label) for a later sweep."""
    with open(path, "w", encoding="utf-8") as out:
        for ex in examples:
            row: dict[str, Any] = {
                "id": ex.id,
                "score": ex.score if math.isfinite(ex.score) else None,
                "label": None if ex.label is None else int(ex.label),
            }
            if ex.categories is not None:
                row["categories"] = {
                    k: (v if math.isfinite(v) else None) for k, v in ex.categories.items()
                }
                if ex.truth is not None:
                    row["labels"] = sorted(k for k, v in ex.truth.items() if v)
            if ex.record is not None:
                for name in opts.group_by:
                    if name in ex.record.fields:
                        row[name] = ex.record.fields[name]
            out.write(dumps(row, null_non_finite=True) + "\n")
    return len(examples)


def write_thresholds(report: dict[str, Any], path: Path) -> dict[str, float]:
    """`--write-thresholds`: a flat {category: threshold} JSON for `guard classify`."""
    if "thresholds" not in report:
        raise input_error(
            "--write-thresholds needs per-category scores ('categories' in the records).",
            "For a binary model, pass the threshold you chose with --threshold instead.",
        )
    thresholds = report["thresholds"]
    if not thresholds:
        categories = report.get("categories") or {}
        why = list(dict.fromkeys(n for cat in categories.values() for n in cat.get("notes", [])))
        raise input_error(
            f"--write-thresholds {path}: no category has a threshold that meets the "
            f"{report['pick']['rule']} rule ({len(categories)} categories: "
            f"{', '.join(sorted(categories)) or 'none'}); nothing was written."
            + "".join(f"\n  {note}" for note in why),
            "Relax the target (--target-recall, --target-precision, --max-fpr), pick another "
            "rule with --pick, or add per-category labels ('labels': [names]) to the records.",
        )
    parse_thresholds(thresholds, f"--write-thresholds {path}")  # what classify will accept
    path.write_text(dumps(thresholds, indent=2) + "\n", encoding="utf-8")
    return thresholds
