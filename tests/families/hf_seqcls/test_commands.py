"""--long and --unsafe-labels reach the guard in every command that loads one: sweep, serve,
pipeline stages (Ray: tests/jobs/test_ray.py). Each is checked against load_guard with the same
options, and a family they do not apply to refuses them (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from guardcli import load_guard

from ...conftest import invoke

runner = CliRunner()
TEXTS = ["tea by the river", "a bridge at dusk", "lighthouse keeper's log", "maple and kettle"]


def test_sweep_scores_with_the_encoder_options(hf_models, tmp_path: Path) -> None:
    folder = hf_models("bert")
    data = tmp_path / "labelled.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": i, "text": t, "label": i % 2}) + "\n" for i, t in enumerate(TEXTS)
        )
    )
    scores = tmp_path / "scores.jsonl"
    args = ["sweep", str(data), "-m", str(folder), "--variant", "fp32", "--scores-out", str(scores)]
    result = invoke(runner, [*args, "--unsafe-labels", "0", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    got = [json.loads(line)["score"] for line in scores.read_text().splitlines()]
    guard = load_guard(folder, variant="fp32", unsafe_labels="0")
    assert got == pytest.approx([v.score for v in guard.classify(TEXTS)], abs=1e-6)
    default = load_guard(folder, variant="fp32").classify(TEXTS)
    assert got != pytest.approx([v.score for v in default], abs=1e-6)  # the option changed them


def test_sweep_refuses_encoder_options_for_another_family(tiny_model, tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    data.write_text(json.dumps({"text": "tea", "label": 0}) + "\n")
    result = invoke(runner, ["sweep", str(data), "-m", str(tiny_model), "--long", "segments"])
    assert result.exit_code == 2
    assert "long" in result.stderr and "Traceback" not in result.stderr


def test_serve_loads_the_guard_with_the_encoder_options(hf_models, monkeypatch) -> None:
    import guardcli.jobs.serve as serve

    folder = hf_models("roberta")
    seen: dict = {}
    monkeypatch.setattr(serve, "create_app", lambda guard, options: seen.setdefault("g", guard))
    monkeypatch.setattr(serve, "run", lambda *a, **k: None)
    sock = SimpleNamespace(getsockname=lambda: ("127.0.0.1", 0))
    monkeypatch.setattr(serve, "bind", lambda *a, **k: sock)
    args = ["serve", "-m", str(folder), "--variant", "fp32", "--max-length", "16"]
    result = invoke(runner, [*args, "--long", "segments", "--unsafe-labels", "0"])
    assert result.exit_code == 0, result.stderr
    text = "tea lighthouse river bridge " * 20
    expected = load_guard(
        folder, variant="fp32", max_length=16, long="segments", unsafe_labels="0"
    ).classify([text])[0]
    got = seen["g"].classify([text])[0]
    assert got.segment == expected.segment and got.segment is not None
    assert got.score == pytest.approx(expected.score, abs=1e-6)


def test_a_pipeline_stage_takes_the_encoder_options(hf_models, tmp_path: Path) -> None:
    from guardcli.jobs.pipeline import load_pipeline

    folder = hf_models("bert")
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "stages:\n"
        f"  - model: {folder}\n    variant: fp32\n    long: segments\n"
        "    unsafe_labels: ['0']\n"
    )
    pipe = load_pipeline(path)
    text = "tea lighthouse river bridge " * 200
    got = pipe.stages[0].guard.classify([text])[0]
    expected = load_guard(folder, variant="fp32", long="segments", unsafe_labels=["0"])
    assert got.segment is not None
    assert got.score == pytest.approx(expected.classify([text])[0].score, abs=1e-6)
