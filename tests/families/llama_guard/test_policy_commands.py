"""--policy reaches the family from every command that loads a generative guard: compare,
serve, pipeline stages (a path relative to the pipeline file) and classify --engine ray. The tiny
model answers S1 for the marker word; a policy without S1 makes that answer unreadable, so the
record becomes an error wherever the policy arrived, and stays judged where it did not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.families.llama_guard.synth import MARKER_WORD

from ...conftest import invoke

ONLY_C1 = '[[categories]]\ncode = "C1"\nname = "Discount Codes"\n'
TEXTS = {"a": "How do I bake bread?", "b": f"a {MARKER_WORD} lighthouse please"}


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": k, "text": t}) + "\n" for k, t in TEXTS.items()))
    (tmp_path / "c1.toml").write_text(ONLY_C1)
    return path


def test_compare_takes_the_policy(runner, lg_tiny: Path, data: Path) -> None:
    base = ["compare", str(lg_tiny), "--variants", "fp32", "--data", str(data)]
    base += ["--no-stability", "--format", "json"]
    plain = json.loads(invoke(runner, base).stdout)
    with_policy = invoke(runner, [*base, "--policy", str(data.parent / "c1.toml")])
    assert with_policy.exit_code == 0, with_policy.stderr
    assert plain["excluded_ids"] == []
    assert json.loads(with_policy.stdout)["excluded_ids"] == ["b"]


def test_serve_checks_the_policy_before_it_listens(runner, lg_tiny: Path, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("exclude: [S99]\n")
    result = invoke(runner, ["serve", "-m", str(lg_tiny), "--policy", str(bad), "--port", "1"])
    assert result.exit_code == 2 and "S99 not in the model's taxonomy" in result.stderr


def test_a_pipeline_stage_takes_a_policy_beside_the_pipeline_file(
    runner, lg_tiny: Path, data: Path
) -> None:
    pipeline = data.parent / "pipeline.yaml"
    stage = {"name": "lg", "model": str(lg_tiny), "role": "screen", "policy": "c1.toml"}
    pipeline.write_text(json.dumps({"stages": [stage]}))  # JSON is YAML
    result = invoke(runner, ["classify", "--pipeline", str(pipeline), "-i", str(data)])
    rows = {r["id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert rows["a"]["decision"] == "allow"
    assert "'S1' is not a category of this policy (C1)" in rows["b"]["error"]["message"]
