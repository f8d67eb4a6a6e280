"""metrics.py against scikit-learn (the reference) and brute force, on random data with ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guardcli.jobs import metrics

SEEDS = [0, 1, 2, 3, 7, 42]


def random_data(seed: int, n: int = 300, levels: int = 25):
    """Scores on a coarse grid so many are tied, labels correlated with the score."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.integers(0, levels, n) / (levels - 1), 6)
    labels = rng.random(n) < 0.15 + 0.7 * scores
    return labels, scores


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, float(b), rel_tol=1e-12, abs_tol=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_aucs_match_sklearn(seed, skm):
    y, s = random_data(seed)
    c = metrics.curve(y, s)
    assert close(metrics.roc_auc(c), skm.roc_auc_score(y, s))
    assert close(metrics.average_precision(c), skm.average_precision_score(y, s))


@pytest.mark.parametrize("seed", SEEDS)
def test_curve_matches_sklearn_curves(seed, skm):
    y, s = random_data(seed)
    c = metrics.curve(y, s)
    precision, recall, thresholds = skm.precision_recall_curve(y, s)
    # sklearn: ascending thresholds plus a final (precision 1, recall 0) point.
    np.testing.assert_array_equal(c.thresholds, thresholds[::-1])
    np.testing.assert_allclose(c.precision(), precision[:-1][::-1], rtol=1e-12)
    np.testing.assert_allclose(c.recall(), recall[:-1][::-1], rtol=1e-12)
    fpr, tpr, roc_thresholds = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_array_equal(c.thresholds, roc_thresholds[1:])
    np.testing.assert_allclose(c.fpr(), fpr[1:], rtol=1e-12)
    np.testing.assert_allclose(c.recall(), tpr[1:], rtol=1e-12)
    assert len(c) == len(np.unique(s))


@pytest.mark.parametrize("seed", SEEDS)
def test_confusion_at_every_threshold_matches_sklearn(seed, skm):
    y, s = random_data(seed)
    for t in [*np.unique(s)[::3], 0.5, 1.5, -1.0]:
        pred = s >= t
        got = metrics.confusion(y, s, float(t))
        tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[False, True]).ravel()
        assert (got.tp, got.fp, got.tn, got.fn) == (tp, fp, tn, fn)
        nan = np.nan
        for mine, ref in (
            (got.precision, skm.precision_score(y, pred, zero_division=nan)),
            (got.recall, skm.recall_score(y, pred, zero_division=nan)),
            (got.f1, skm.f1_score(y, pred, zero_division=nan)),
            (got.accuracy, skm.accuracy_score(y, pred)),
            (got.fpr, fp / (fp + tn)),
        ):
            assert (mine is None and np.isnan(ref)) or close(mine, ref)


@pytest.mark.parametrize("seed", SEEDS)
def test_curve_points_equal_confusion_at_their_threshold(seed):
    y, s = random_data(seed, n=120)
    c = metrics.curve(y, s)
    for i in range(len(c)):
        assert c.at(i) == metrics.confusion(y, s, float(c.thresholds[i]))


def brute_force(y, s, key, ok):
    """Every distinct threshold, the one meeting `ok` that maximises `key`."""
    rows = [metrics.confusion(y, s, float(t)) for t in np.unique(s)]
    rows = [r for r in rows if ok(r)]
    return max(rows, key=key).threshold if rows else None


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("target", [0.5, 0.9, 0.95, 1.0])
def test_operating_points_against_brute_force(seed, target):
    y, s = random_data(seed)
    c = metrics.curve(y, s)
    fpr_cap = 1 - target + 0.01
    got = metrics.operating_points(
        c, target_recall=target, target_precision=target, max_fpr=fpr_cap
    )

    def threshold(name):
        return None if got[name] is None else got[name]["threshold"]

    assert threshold("best_f1") == brute_force(y, s, lambda r: (r.f1, r.threshold), bool)
    assert threshold("target_recall") == brute_force(
        y, s, lambda r: r.threshold, lambda r: r.recall >= target
    )
    assert threshold("target_precision") == brute_force(
        y, s, lambda r: -r.threshold, lambda r: r.precision is not None and r.precision >= target
    )
    assert threshold("max_fpr") == brute_force(
        y, s, lambda r: -r.threshold, lambda r: r.fpr <= fpr_cap
    )
    assert threshold("zero_fp") == brute_force(y, s, lambda r: -r.threshold, lambda r: r.fp == 0)


def test_target_recall_is_exact_at_a_reachable_fraction():
    y = np.array([1] * 100 + [0] * 10, dtype=bool)
    s = np.r_[np.linspace(1, 0.01, 100), np.full(10, 0.005)]
    point = metrics.operating_points(metrics.curve(y, s), target_recall=0.99)["target_recall"]
    assert point is not None and point["tp"] == 99


def test_zero_fp_is_none_when_a_negative_scores_highest():
    y = np.array([0, 1, 1], dtype=bool)
    s = np.array([0.9, 0.8, 0.1])
    assert metrics.operating_points(metrics.curve(y, s))["zero_fp"] is None


def test_bootstrap_is_seeded_and_brackets_the_value():
    y, s = random_data(3, n=400)
    at = metrics.confusion(y, s, 0.5)
    a = metrics.bootstrap_ci(at, 500, seed=11)
    assert a == metrics.bootstrap_ci(at, 500, seed=11)
    assert a != metrics.bootstrap_ci(at, 500, seed=12)
    for name in ("recall", "precision", "fpr"):
        band = a[name]
        assert band["value"] == getattr(at, name)
        assert 0 <= band["low"] <= band["value"] <= band["high"] <= 1


def test_bootstrap_matches_index_resampling_in_distribution():
    """Drawing the cells from a multinomial is resampling records: compare with the slow way."""
    y, s = random_data(5, n=300)
    at = metrics.confusion(y, s, 0.5)
    rng = np.random.default_rng(0)
    recalls = []
    for _ in range(2000):
        i = rng.integers(0, len(y), len(y))
        recalls.append(metrics.confusion(y[i], s[i], 0.5).recall)
    low, high = np.percentile(recalls, [2.5, 97.5])
    band = metrics.bootstrap_ci(at, 2000, seed=0)["recall"]
    assert abs(band["low"] - low) < 0.02 and abs(band["high"] - high) < 0.02


def test_group_breakdown_sorted_worst_first():
    y = np.array([1, 1, 0, 1, 1, 0, 0, 0], dtype=bool)
    s = np.array([0.9, 0.2, 0.1, 0.9, 0.8, 0.7, 0.1, 0.9])
    rows = metrics.group_breakdown(y, s, ["a", "a", "a", "b", "b", "b", "c", "c"], 0.5)
    assert [r["group"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["recall"] == 0.5 and rows[0]["n"] == 3
    assert rows[1]["fpr"] == 1.0 and rows[1]["precision"] == 2 / 3
    assert rows[2]["recall"] is None and rows[2]["fpr"] == 0.5


@pytest.mark.parametrize(
    ("value", "rule", "expected"),
    [
        (1, None, True),
        (0, None, False),
        (True, None, True),
        ("false", None, False),
        ("Unsafe", None, True),
        ("safe", None, False),
        ("Benign", "!Benign", False),
        ("Hate Speech", "!Benign", True),
        ("cbrn", "Hate Speech,CBRN", True),
        ("Violence", "Hate Speech,CBRN", False),
        (["Hate Speech"], None, True),
        ([], None, False),
        (["Benign"], "!benign", False),
    ],
)
def test_parse_label(value, rule, expected):
    parsed_rule = metrics.PositiveRule.parse(rule) if rule else None
    assert metrics.parse_label(value, parsed_rule) is expected


@pytest.mark.parametrize("value", [2, "maybe", None, {"a": 1}.items()])
def test_parse_label_rejects(value):
    with pytest.raises(ValueError):
        metrics.parse_label(value)


def test_all_positive_and_all_negative_give_null_not_a_wrong_number(skm):
    s = np.array([0.1, 0.5, 0.5, 0.9])
    pos = metrics.sweep([True] * 4, s)
    assert pos["roc_auc"] is None and pos["at_threshold"]["fpr"] is None
    assert pos["pr_auc"] == skm.average_precision_score([1] * 4, s)
    assert any("every record is positive" in n for n in pos["notes"])
    neg = metrics.sweep([False] * 4, s)
    assert neg["roc_auc"] is None and neg["pr_auc"] is None
    assert neg["at_threshold"]["recall"] is None and neg["operating_points"]["best_f1"] is None
    assert any("every record is negative" in n for n in neg["notes"])


def test_nan_scores_are_left_out_and_counted():
    y = [True, False, True, False]
    report = metrics.sweep(y, [0.9, float("nan"), None, 0.2])
    assert report["n"] == 2 and report["excluded"] == 2
    assert report["roc_auc"] == 1.0
    assert "2 record(s) without a finite score" in report["notes"][0]


def test_empty_input_is_all_null():
    report = metrics.sweep([], [])
    assert report["n"] == 0 and report["roc_auc"] is None and report["curve"] == []
    assert report["operating_points"]["best_f1"] is None


def test_single_score_everything_tied(skm):
    report = metrics.sweep([True, False, True], [0.5, 0.5, 0.5])
    assert report["roc_auc"] == skm.roc_auc_score([1, 0, 1], [0.5] * 3) == 0.5
    assert math.isclose(report["pr_auc"], skm.average_precision_score([1, 0, 1], [0.5] * 3))
    assert len(report["curve"]) == 1


def test_points_thins_the_curve_keeping_both_ends():
    y, s = random_data(0)
    full = metrics.sweep(y, s)["curve"]
    thin = metrics.sweep(y, s, points=5)["curve"]
    assert len(thin) == 5 and thin[0] == full[0] and thin[-1] == full[-1]
