"""Verdict side: guard verdicts -> each protocol's answer, under the service's policy."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.jobs.serve.policy import (
    EMPTY,
    UNJUDGED,
    Policy,
)


def rethreshold(verdict: Verdict, threshold: float | None, policy: Policy) -> Verdict:
    """A per-request threshold, for families whose decision is `score >= threshold`.

    Families that decide otherwise (per-category thresholds, generated text) keep their own
    decision; their verdict says which threshold it used.
    """
    if threshold is None or verdict.error is not None or verdict.score is None:
        return verdict
    if isinstance(verdict.categories, dict | list):
        return verdict
    flagged = verdict.score >= threshold
    label = verdict.label
    if label is not None and verdict.flagged != flagged:
        label = policy.positive_class if flagged else _negative(label, policy)
    return replace(verdict, flagged=flagged, threshold=threshold, label=label)


def _negative(label: str, policy: Policy) -> str:
    return "safe" if label == policy.positive_class else label


def decision(verdict: Verdict, policy: Policy) -> bool:
    """Whether to treat a verdict as flagged. An unjudged record is flagged when failing
    closed, and never silently allowed: callers also report its error."""
    if verdict.error is not None:
        if verdict.error.type == EMPTY:  # nothing to block; the answer carries the note
            return False
        if verdict.error.type == UNJUDGED:
            return not policy.allow_unjudged
        return policy.fail_closed
    return bool(verdict.flagged)


def failed_verdict(record: Record, message: str, policy: Policy) -> Verdict:
    """The answer for a record the server could not judge (timeout, runtime error)."""
    return Verdict(
        id=record.id,
        flagged=True if policy.fail_closed else None,
        error=RecordError("internal", message, record.line),
        kept=record.kept,
    )


def _categories(verdict: Verdict, policy: Policy, flagged: bool) -> tuple[dict, dict]:
    """OpenAI-style categories and scores. A binary family reports one category, named after
    its positive class; multilabel families report each category."""
    cats = verdict.categories
    if isinstance(cats, dict) and cats:
        flags: dict[str, bool] = {}
        scores: dict[str, float] = {}
        for name, value in cats.items():
            if isinstance(value, dict):
                scores[name] = float(value.get("score") or 0.0)
                flags[name] = bool(value.get("flagged"))
            elif isinstance(value, int | float) and not isinstance(value, bool):
                scores[name] = float(value)
                flags[name] = float(value) >= (verdict.threshold or policy.threshold)
            else:
                flags[name] = bool(value)
                scores[name] = 1.0 if value else 0.0
        return flags, scores
    if isinstance(cats, list) and cats:
        score = 1.0 if verdict.score is None else float(verdict.score)
        names = [str(c) for c in cats if str(c) != "None"]
        return {n: flagged for n in names}, {n: score for n in names}
    score = verdict.score if verdict.score is not None else (1.0 if flagged else 0.0)
    return {policy.positive_class: flagged}, {policy.positive_class: float(score)}


def with_openai_categories(
    flags: dict[str, bool], scores: dict[str, float], policy: Policy
) -> tuple[dict[str, bool], dict[str, float]]:
    """The family's own categories, plus each OpenAI moderation category one of them
    corresponds to (flagged if any of them is, scored by the highest), for OpenAI clients."""
    flags, scores = dict(flags), dict(scores)
    for name in list(flags):
        for target in policy.openai.get(name.lower(), ()):
            flags[target] = flags.get(target, False) or flags[name]
            scores[target] = max(scores.get(target, 0.0), scores.get(name, 0.0))
    return flags, scores


def moderation_result(verdict: Verdict, policy: Policy) -> dict[str, Any]:
    flagged = decision(verdict, policy)
    categories, scores = with_openai_categories(*_categories(verdict, policy, flagged), policy)
    result: dict[str, Any] = {
        "flagged": flagged,
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {name: ["text"] for name in categories},
    }
    if verdict.error is not None:
        result["error"] = verdict.error.to_dict()
    if verdict.truncated:
        result["truncated"] = True
    return result


def moderation_response(verdicts: list[Verdict], policy: Policy, request_id: str) -> dict:
    return {
        "id": request_id,
        "model": policy.model,
        "results": [moderation_result(v, policy) for v in verdicts],
    }


def _reason(verdict: Verdict, index: int, policy: Policy) -> str:
    where = f"text {index}"
    if verdict.error is not None:
        return f"{where}: could not be judged ({verdict.error.type}: {verdict.error.message})"
    cats = [n for n, f in _categories(verdict, policy, True)[0].items() if f]
    score = "n/a" if verdict.score is None else f"{verdict.score:.4f}"
    # Families with per-category thresholds have no single threshold to name.
    bound = "" if verdict.threshold is None else f" >= {verdict.threshold}"
    return f"{where}: score {score}{bound} ({', '.join(cats) or policy.positive_class})"


def guardrail_response(verdicts: list[Verdict], policy: Policy) -> dict[str, Any]:
    """LiteLLM's answer: BLOCKED with a reason naming model, score and categories, else NONE.

    When failing open, an unjudged text does not block, but the answer still carries the
    error (`errors`) and the server counts and logs it: nothing is allowed silently.
    """
    blocked = [
        _reason(v, i, policy) for i, v in enumerate(verdicts, start=1) if decision(v, policy)
    ]
    errors = [v.error.to_dict() for v in verdicts if v.error is not None]
    out: dict[str, Any] = {"action": "BLOCKED" if blocked else "NONE"}
    if blocked:
        variant = f" ({policy.variant})" if policy.variant else ""
        out["blocked_reason"] = f"Blocked by guard {policy.model}{variant}: " + "; ".join(blocked)
    if errors:
        out["errors"] = errors
    return out


def check_response(verdict: Verdict, mode: str, policy: Policy) -> dict[str, Any]:
    flagged = decision(verdict, policy)
    categories, scores = _categories(verdict, policy, flagged)
    out: dict[str, Any] = {
        "decision": ("annotate" if mode == "annotate" else "block") if flagged else "allow",
        "flagged": flagged,
        "score": verdict.score,
        "threshold": verdict.threshold if verdict.threshold is not None else policy.threshold,
        "categories": [n for n, f in categories.items() if f],
        "category_scores": scores,
        "model": policy.model,
        "truncated": bool(verdict.truncated),
    }
    if verdict.error is not None:
        out["error"] = verdict.error.to_dict()
    return out


def classify_response(verdicts: list[Verdict], policy: Policy) -> dict[str, Any]:
    """guard's records; an unjudged record's `flagged` is the server's decision, as on the
    other endpoints."""
    out = []
    for verdict in verdicts:
        row = verdict.to_dict()
        if verdict.error is not None:
            row["flagged"] = decision(verdict, policy)
        out.append(row)
    return {"verdicts": out}
