"""`guard bench --duplicates`: a stream with repeats, timed with and without the verdict cache."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardcli.jobs.bench.duplicates import DuplicateStream

from ..conftest import invoke


@pytest.mark.slow
@settings(max_examples=20, deadline=None)
@given(share=st.sampled_from([0.0, 0.3, 0.7]), seed=st.integers(0, 1000))
def test_the_stream_repeats_the_share_asked(share, seed):
    texts = [f"w{i} a b c d e f" for i in range(8)]
    stream = DuplicateStream(texts, share, seed=seed).take(2000)
    repeats = 2000 - len(set(stream))
    assert abs(repeats / 2000 - share) < 0.05
    assert stream == DuplicateStream(texts, share, seed=seed).take(2000)  # same every time
    fresh = list(dict.fromkeys(stream))
    assert fresh[:8] == texts  # the given prompts first, then their words reshuffled
    for i, text in enumerate(fresh):
        words = text.split()
        assert sorted(words) == sorted(texts[i % 8].split()) or words[:-1] == texts[i % 8].split()


@pytest.mark.slow
def test_bench_duplicates_adds_cached_rows(runner, tiny_model) -> None:
    args = ["bench", "-m", str(tiny_model), "--variant", "int8", "--batch-size", "4"]
    args += ["--seq-len", "12", "--duration", "0.3", "--duplicates", "0.5", "-f", "json"]
    result = invoke(runner, args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["duplicates"] == 0.5
    (row,) = report["results"]
    assert row["cache_identical"] is True
    assert 0.2 < row["cache_hit_share"] < 0.8
    assert row["cache_speedup"] == row["cache_e2e_prompts_per_s"] / row["e2e_prompts_per_s"]
    assert "cache_speedup" in report["definitions"]


def test_duplicates_must_be_a_share(runner, tiny_model) -> None:
    result = invoke(runner, ["bench", "-m", str(tiny_model), "--duplicates", "1.5"])
    assert result.exit_code == 2 and "--duplicates" in result.stderr
