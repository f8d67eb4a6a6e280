"""`guard sweep` end to end: a real tiny model, scores files, multilabel, plots, errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ..conftest import SAMPLES, invoke

LABELLED = SAMPLES / "labelled.jsonl"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_sweep(tiny_model, tmp_path_factory):
    """One model run over the sample set, shared: (report, scores-out path)."""
    from typer.testing import CliRunner

    scores = tmp_path_factory.mktemp("sweep") / "scores.jsonl"
    args = ["sweep", str(LABELLED), "--model", str(tiny_model), "--variant", "fp32"]
    args += ["--group-by", "lang", "--scores-out", str(scores), "--format", "json"]
    args += ["--bootstrap", "200", "--seed", "3", "--target-recall", "0.9"]
    result = invoke(CliRunner(), args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), scores


@pytest.mark.slow
def test_model_sweep_matches_sklearn_on_its_own_scores(model_sweep, skm):
    report, scores = model_sweep
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    truth = {r["id"]: r["label"] for r in map(json.loads, LABELLED.read_text().splitlines())}
    assert [r["id"] for r in rows] == list(truth)
    assert all(r["label"] == truth[r["id"]] for r in rows)
    y = np.array([r["label"] for r in rows])
    s = np.array([r["score"] for r in rows])
    assert report["n"] == 200 and report["positives"] == int(y.sum())
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert report["pr_auc"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert report["threshold"] == 0.5 and report["threshold_source"] == "model"
    tn, fp, fn, tp = skm.confusion_matrix(y, s >= 0.5, labels=[0, 1]).ravel()
    at = report["at_threshold"]
    assert (at["tp"], at["fp"], at["tn"], at["fn"]) == (tp, fp, tn, fn)
    assert report["model"]["variant"] == "fp32"
    assert {g["group"] for g in report["groups"]} == {r["lang"] for r in rows}
    assert report["bootstrap"]["seed"] == 3 and report["pick"]["rule"] == "target_recall"


@pytest.mark.slow
def test_scores_file_gives_the_same_report_without_a_model(model_sweep, runner):
    report, scores = model_sweep
    args = ["sweep", str(scores), "--group-by", "lang", "--format", "json", "--threshold", "0.5"]
    args += ["--bootstrap", "200", "--seed", "3", "--target-recall", "0.9"]
    result = invoke(runner, args)
    assert result.exit_code == 0, result.stderr
    again = json.loads(result.stdout)
    for key in ("n", "roc_auc", "pr_auc", "at_threshold", "operating_points", "groups"):
        assert again[key] == report[key], key
    assert again["bootstrap"] == report["bootstrap"]
    assert "model" not in again


def test_table_output_has_every_section(model_sweep, runner):
    _, scores = model_sweep
    args = ["sweep", str(scores), "--group-by", "lang", "--bootstrap", "50", "--format", "table"]
    result = invoke(runner, args)
    assert result.exit_code == 0, result.stderr
    for text in ("ROC AUC", "At threshold 0.5000", "95% CI", "Operating points", "best-f1"):
        assert text in result.stdout
    assert "By lang (worst first)" in result.stdout
    assert "F1 by threshold" in result.stdout and "recall 1" in result.stdout
    assert "note:" not in result.stdout  # people's notes go to stderr


def test_stdin_and_points(model_sweep, runner):
    _, scores = model_sweep
    result = invoke(runner, ["sweep", "-", "--points", "7", "-f", "json"], scores.read_bytes())
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["curve"]) == 7


def test_labels_words_positive_rule_and_excluded_records(tmp_path, runner, skm):
    rows = [
        {"id": 1, "score": 0.9, "label": "Hate Speech"},
        {"id": 2, "score": 0.8, "label": "Benign"},
        {"id": 3, "score": 0.2, "label": "CBRN"},
        {"id": 4, "score": 0.1, "label": "Benign"},
        {"id": 5, "score": None, "label": "CBRN"},
        {"id": 6, "error": {"type": "empty_text"}, "flagged": None, "label": "Benign"},
    ]
    path = write_jsonl(tmp_path / "cats.jsonl", rows)
    result = invoke(runner, ["sweep", str(path), "--positive", "!Benign", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["n"], report["positives"], report["excluded"]) == (4, 2, 2)
    assert report["excluded_reasons"] == {"nan_score": 1, "error_record": 1}
    assert report["roc_auc"] == skm.roc_auc_score([1, 0, 1, 0], [0.9, 0.8, 0.2, 0.1])
    assert "2 record(s) left out" in result.stderr
    # Without --positive, category names are not labels: the note says how to fix it.
    result = invoke(runner, ["sweep", str(path), "-f", "json"])
    assert result.exit_code == 2
    assert "No record has both a label and a score" in result.stderr


def test_all_positive_set_reports_null_auc_with_a_note(tmp_path, runner):
    path = write_jsonl(tmp_path / "pos.jsonl", [{"score": s, "label": 1} for s in (0.2, 0.7)])
    result = invoke(runner, ["sweep", str(path), "-f", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["roc_auc"] is None
    assert "every record is positive" in result.stderr


def test_empty_input_is_an_input_error(tmp_path, runner):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    result = invoke(runner, ["sweep", str(path)])
    assert result.exit_code == 2
    assert "Error: The input is empty: nothing to sweep." in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "csv"], "Unknown format 'csv'."),
        (["--pick", "target-recall"], "--pick target-recall needs --target-recall VALUE."),
        (["--pick", "magic"], "Unknown --pick rule 'magic'."),
        (["--positive", "!"], "--positive '!' names no category."),
        (["--write-thresholds", "t.json"], "--write-thresholds needs per-category scores"),
    ],
)
def test_usage_errors(tmp_path, runner, args, message):
    path = write_jsonl(tmp_path / "s.jsonl", [{"score": 0.3, "label": 0}, {"score": 1, "label": 1}])
    result = invoke(runner, ["sweep", str(path), *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_multilabel_sweeps_and_write_thresholds(tmp_path, runner, skm):
    rng = np.random.default_rng(0)
    names = ["Violent", "Sexual", "Self-harm"]
    rows = []
    for i in range(150):
        truth = [n for n in names if rng.random() < 0.3]
        cats = {
            n: {
                "score": round(float(np.clip(rng.normal(0.7 if n in truth else 0.3, 0.2), 0, 1)), 2)
            }
            for n in names
        }
        rows.append({"id": i, "categories": cats, "labels": truth})
    path = write_jsonl(tmp_path / "ml.jsonl", rows)
    out = tmp_path / "thresholds.json"
    args = ["sweep", str(path), "--target-recall", "0.9", "--write-thresholds", str(out)]
    result = invoke(runner, [*args, "-f", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    written = json.loads(out.read_text())
    assert set(written) == set(names) and written == report["thresholds"]
    for name in names:
        y = np.array([name in r["labels"] for r in rows])
        s = np.array([r["categories"][name]["score"] for r in rows])
        cat = report["categories"][name]
        assert cat["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert cat["pr_auc"] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
        best = max(t for t in np.unique(s) if (s[y] >= t).mean() >= 0.9)
        assert written[name] == best
    # The overall score is the highest category score; the label, any category applies.
    y = np.array([bool(r["labels"]) for r in rows])
    s = np.array([max(c["score"] for c in r["categories"].values()) for r in rows])
    assert report["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)


@pytest.mark.slow
def test_plot_writes_a_png(model_sweep, runner, tmp_path):
    pytest.importorskip("matplotlib")
    _, scores = model_sweep
    png = tmp_path / "sweep.png"
    result = invoke(runner, ["sweep", str(scores), "--plot", str(png), "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(model_sweep, runner, tmp_path, monkeypatch):
    _, scores = model_sweep
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke(runner, ["sweep", str(scores), "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 3
    assert "pip install 'guardcli[plot]'" in result.stderr


def test_help_lists_options_and_exit_codes(runner):
    result = invoke(runner, ["sweep", "--help"])
    assert result.exit_code == 0
    for text in ("--target-recall", "--write-thresholds", "--group-by", "Exit codes"):
        assert text in result.stdout
    assert "sweep" in invoke(runner, ["--help"]).stdout
