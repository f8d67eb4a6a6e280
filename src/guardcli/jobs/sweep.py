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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guardcli.core.errors import input_error
from guardcli.core.strict_json import dumps
from guardcli.core.thresholds import parse_thresholds
from guardcli.core.verdicts import Record
from guardcli.jobs import metrics

if TYPE_CHECKING:
    from guardcli.families import Guard

from guardcli.jobs.sweep_examples import (  # noqa: F401 (re-exported)
    DEFAULT_THRESHOLD,
    LABEL_FIELD_FALLBACKS,
    REPORT_ORDER,
    Example,
    SweepOptions,
    SweepResult,
    _binary_label,
    _number,
    category_scores,
    category_truth,
    label_problem,
    read_example,
)
from guardcli.jobs.sweep_report import (  # noqa: F401 (re-exported)
    _binary_report,
    _category_reports,
    build_report,
)


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
