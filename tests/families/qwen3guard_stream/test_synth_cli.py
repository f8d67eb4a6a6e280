"""`guard synth qwen3guard-stream` writes a folder that `guard stream` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import invoke


@pytest.mark.slow
def test_synth_then_stream(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "qs"
    result = invoke(runner, ["synth", "qwen3guard-stream", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "wrote qwen3guard-stream (tiny, trained only on marker words)" in result.stderr
    marker = json.loads((out / "guardcli_synthetic.json").read_text())
    assert marker["family"] == "qwen3guard-stream" and marker["marker_word"] == "zorblax"
    assert (out / "onnx" / "model.onnx").is_file()
    streamed = invoke(runner, ["stream", "-m", str(out), "-p", "a garden"], input="a kettle")
    assert streamed.exit_code == 0, streamed.stderr
    assert json.loads(streamed.stdout.splitlines()[-1])["variant"] == "fp32"


def test_synth_refuses_an_unknown_size(tmp_path: Path) -> None:
    result = invoke(CliRunner(), ["synth", "qwen3guard-stream", "--size", "huge", "-o", "x"])
    assert result.exit_code == 2
    assert "Unknown size 'huge'." in result.stderr
