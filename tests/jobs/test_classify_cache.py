"""`guard classify` with the verdict cache: duplicates judged once, output byte-identical."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from guardcli import load_guard
from guardcli.core.records import ReadOptions, read_lines
from guardcli.core.verdict_cache import VerdictCache
from guardcli.jobs.classify import classify_into

from ..conftest import invoke

LINES = [
    json.dumps({"id": "a", "text": "a lighthouse at dusk", "src": 1}),
    "bread recipes",
    json.dumps({"id": "c", "text": "a lighthouse at dusk", "src": 3}),
    "{not json",
    "{not json",
    "bread recipes",
    json.dumps({"id": "g", "text": ""}),
]


@pytest.mark.slow
def test_classify_output_is_identical_with_and_without_the_cache(
    runner, tiny_model: Path, tmp_path
):
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    base = ["classify", "-m", str(tiny_model), "--variant", "int8", "-i", str(path)]
    args = [*base, "--format", "jsonl", "--keep", "src"]
    cached = invoke(runner, args)
    plain = invoke(runner, [*args, "--no-cache"])
    assert cached.exit_code == plain.exit_code == 2  # the bad lines are error records
    assert cached.stdout == plain.stdout
    rows = [json.loads(line) for line in cached.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["a", "2", "c", "4", "5", "6", "g"]
    assert rows[2]["src"] == 3 and rows[0]["src"] == 1
    assert [r["error"]["line"] for r in rows if "error" in r] == [4, 5, 7]


@pytest.mark.slow
def test_the_summary_counts_cache_hits(tiny_model: Path):
    guard = load_guard(tiny_model, variant="int8")
    guard.verdict_cache = VerdictCache()
    records = read_lines(io.BytesIO(b"x\ny\nx\nx\n"), ReadOptions())
    summary = classify_into(guard, records, lambda verdicts: None)
    assert summary.records == 4 and summary.cached == 2
    assert "2 from cache" in summary.line()


def test_cache_mb_must_be_positive(runner, tiny_model: Path):
    result = invoke(runner, ["classify", "-m", str(tiny_model), "--cache-mb", "0", "x"])
    assert result.exit_code == 2 and "--cache-mb" in result.stderr
