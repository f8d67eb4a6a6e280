"""`guard bench --mode stream` on the tiny model: the shape of its JSON and table, numbers that
are sane (positive, rates the inverse of the costs, growth computed from its own rows), FP32
agreeing with the torch reference, and usage errors at the door."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import invoke

ARGS = ["--mode", "stream", "--chunk-tokens", "1,4", "--contexts", "40,16"]


@pytest.mark.slow
def test_stream_mode_json(stream_model: Path) -> None:
    result = invoke(
        CliRunner(),
        ["bench", "-m", str(stream_model), *ARGS, "--variant", "fp32,int8", "--format", "json"],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["contexts"] == [16, 40] and report["settings"]["chunks"] == [1, 4]
    rows = report["results"]
    keys = [(r["variant"], r["chunk"], r["context"]) for r in rows]
    assert keys == [(v, k, n) for v in ("fp32", "int8") for k in (1, 4) for n in (16, 40)]
    for r in rows:
        assert r["p50_ms_per_token"] > 0 and r["prefill_ms"] > 0
        assert r["tokens_per_s"] == pytest.approx(1000 / r["p50_ms_per_token"])
        assert r["timed_tokens"] >= 48 and r["timed_tokens"] % r["chunk"] == 0
        shortest = r["context"] == 16
        assert (r["agreement_vs_reference"] is not None) == shortest
    for variant in ("fp32", "int8"):  # a longer context took longer to prefill
        mine = [r for r in rows if r["variant"] == variant and r["chunk"] == 1]
        assert mine[0]["prefill_ms"] < mine[1]["prefill_ms"]
    fp32 = [r for r in rows if r["variant"] == "fp32" and r["context"] == 16]
    assert all(r["agreement_vs_reference"] == 1.0 for r in fp32)
    assert all(r["max_abs_dlogit_vs_reference"] <= 1e-4 for r in fp32)
    by = {(r["variant"], r["chunk"], r["context"]): r["p50_ms_per_token"] for r in rows}
    growth = report["growth"]
    assert [(g["variant"], g["chunk"]) for g in growth] == [(v, k) for v, k, _ in keys[::2]]
    for g in growth:
        want = by[(g["variant"], g["chunk"], 40)] / by[(g["variant"], g["chunk"], 16)]
        assert (g["from_context"], g["to_context"]) == (16, 40)
        assert g["growth"] == pytest.approx(want)


@pytest.mark.slow
def test_stream_mode_table(stream_model: Path) -> None:
    result = invoke(
        CliRunner(),
        ["bench", "-m", str(stream_model), *ARGS, "--variant", "fp32", "--format", "table"],
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for header in ("variant", "chunk", "context", "ms/token", "tokens", "prefill", "agree vs"):
        assert header in out
    assert "fp32 chunk 1: per-token p50 ×" in out and "from 16 to 40 tokens of context" in out
    assert "fp32 chunk 4: per-token p50 ×" in out
    assert "benchmarking fp32 streams" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk-tokens", "1,8"], "--chunk-tokens and --contexts go with --mode stream."),
        (["--mode", "stream,score"], "--mode stream runs alone."),
        (["--mode", "stream", "--contexts", "0"], "--contexts values must be at least 1."),
        (["--mode", "stream", "--contexts", "9000"], "--contexts values must be at most"),
        (["--mode", "stream", "--chunk-tokens", "a"], "is not a list of whole numbers."),
    ],
)
def test_stream_mode_usage_errors(stream_model: Path, args: list[str], message: str) -> None:
    result = invoke(CliRunner(), ["bench", "-m", str(stream_model), *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_stream_mode_needs_a_stream_model(tiny_model: Path) -> None:
    result = invoke(CliRunner(), ["bench", "-m", str(tiny_model), "--mode", "stream"])
    assert result.exit_code == 2
    assert "--mode stream needs a model that judges streams token by token" in result.stderr
