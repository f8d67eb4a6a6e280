"""Confusion counts at a threshold, and the whole threshold curve of labelled scores with its
ROC AUC and average precision (scikit-learn's definitions). Pure numpy; a metric with a zero
denominator is None. Operating points, CIs and the sweep report are jobs.metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den else None


@dataclass(frozen=True)
class Confusion:
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def precision(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float | None:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def f1(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "fpr": self.fpr,
            "accuracy": self.accuracy,
        }


def confusion(labels: np.ndarray, scores: np.ndarray, threshold: float) -> Confusion:
    y = np.asarray(labels, dtype=bool)
    flagged = np.asarray(scores, dtype=float) >= threshold
    tp = int(np.sum(flagged & y))
    fp = int(np.sum(flagged & ~y))
    return Confusion(float(threshold), tp, fp, int(np.sum(~y)) - fp, int(np.sum(y)) - tp)


# -- the curve ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Curve:
    """Counts at every distinct score, highest first: flagging `score >= thresholds[i]`."""

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    positives: int
    negatives: int

    def __len__(self) -> int:
        return len(self.thresholds)

    def at(self, i: int) -> Confusion:
        tp, fp = int(self.tp[i]), int(self.fp[i])
        return Confusion(
            float(self.thresholds[i]), tp, fp, self.negatives - fp, self.positives - tp
        )

    def recall(self) -> np.ndarray:
        return self.tp / self.positives if self.positives else np.full(len(self), np.nan)

    def precision(self) -> np.ndarray:
        return self.tp / (self.tp + self.fp)  # at least one record is flagged at every point

    def fpr(self) -> np.ndarray:
        return self.fp / self.negatives if self.negatives else np.full(len(self), np.nan)

    def f1(self) -> np.ndarray:
        return 2 * self.tp / (2 * self.tp + self.fp + (self.positives - self.tp))

    def rows(self, points: int | None = None) -> list[dict[str, Any]]:
        """The curve as records; `points` keeps that many, evenly spaced, ends included."""
        out = []
        for i in thin_index(len(self), points):
            c = self.at(int(i))
            out.append(
                {
                    "threshold": c.threshold,
                    "tp": c.tp,
                    "fp": c.fp,
                    "precision": c.precision,
                    "recall": c.recall,
                    "fpr": c.fpr,
                    "f1": c.f1,
                }
            )
        return out


def thin_index(length: int, points: int | None) -> np.ndarray:
    """`points` positions out of `length`, evenly spaced, both ends kept (all when None)."""
    if points is None or points >= length:
        return np.arange(length)
    return np.unique(np.round(np.linspace(0, length - 1, max(points, 1))).astype(int))


def curve(labels: np.ndarray, scores: np.ndarray) -> Curve:
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # The last index of each run of equal scores: tied records are flagged together.
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], dtype=int)
    tps = np.cumsum(y)[last] if len(s) else np.array([], dtype=int)
    return Curve(
        thresholds=s[last],
        tp=tps.astype(np.int64),
        fp=(last + 1 - tps).astype(np.int64),
        positives=int(y.sum()),
        negatives=int((~y).sum()),
    )


def roc_auc(c: Curve) -> float | None:
    """Area under the ROC curve (trapezoids through tied points, as scikit-learn)."""
    if not c.positives or not c.negatives:
        return None
    tpr = np.r_[0.0, c.tp / c.positives]
    fpr = np.r_[0.0, c.fp / c.negatives]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def average_precision(c: Curve) -> float | None:
    """scikit-learn's average precision: sum over thresholds of (R_n - R_{n-1}) * P_n."""
    if not c.positives:
        return None
    recall = np.r_[0.0, c.recall()]
    return float(np.sum(np.diff(recall) * c.precision()))
