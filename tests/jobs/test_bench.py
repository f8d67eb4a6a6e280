"""`guard bench`: the report's structure and invariants on the tiny model, never its speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import guardcli
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.tokenize import TextTokenizer
from guardcli.jobs.bench.runner import (
    BenchConfig,
    parse_batch_sizes,
    parse_variants,
    run_bench,
    synthetic_prompts,
)

from ..cli.test_docs import NOT_RUNTIME, without
from ..conftest import SAMPLES, invoke

ROW_KEYS = {
    "variant",
    "backend",
    "batch_size",
    "prompts_per_s",
    "tokens_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "load_s",
    "peak_rss_mb",
}
MACHINE_KEYS = {"cpu_model", "features", "usable_cores", "onnxruntime", "guardcli"}
VARIANTS = ["fp32", "fp16", "int8"]
SIZES = [1, 4]
SEQ_LEN = 16


@pytest.fixture(scope="module")
def report(tiny_model: Path) -> dict:
    config = BenchConfig(
        tiny_model,
        variants=VARIANTS,
        batch_sizes=SIZES,
        seq_len=SEQ_LEN,
        duration=0.2,
        price_per_hour=2.0,
    )
    return run_bench(config)


@pytest.mark.slow
def test_report_has_machine_and_a_row_per_variant_and_batch_size(report) -> None:
    assert MACHINE_KEYS <= set(report["machine"])
    assert report["machine"]["usable_cores"] >= 1
    assert report["machine"]["guardcli"] == guardcli.__version__
    assert report["model"]["synthetic"] is True
    rows = report["results"]
    assert [(r["variant"], r["batch_size"]) for r in rows] == [
        (v, b) for b in SIZES for v in VARIANTS
    ]
    for row in rows:
        assert ROW_KEYS <= set(row)
        assert row["backend"] == "onnxruntime-cpu"
    json.dumps(report)  # serializable as is


@pytest.mark.slow
def test_percentiles_are_ordered(report) -> None:
    for row in report["results"]:
        for prefix in ("", "batch_", "e2e_"):
            assert 0 < row[f"{prefix}p50_ms"] <= row[f"{prefix}p95_ms"] <= row[f"{prefix}p99_ms"]
        if row["batch_size"] == 1:
            assert row["p50_ms"] == pytest.approx(row["batch_p50_ms"])


@pytest.mark.slow
def test_rates_agree_with_counts(report) -> None:
    for row in report["results"]:
        assert row["batches"] >= 1
        assert row["prompts"] == row["batches"] * row["batch_size"]
        assert row["prompts_per_s"] == pytest.approx(row["prompts"] / row["measured_s"])
        # Real tokens only: synthetic prompts are SEQ_LEN tokens each and need no padding.
        assert row["tokens"] == row["prompts"] * SEQ_LEN
        assert row["tokens_per_s"] == pytest.approx(row["prompts_per_s"] * SEQ_LEN)
        assert row["padding_share"] == 0
        # End to end includes the model call, so it cannot be faster.
        assert row["e2e_prompts_per_s"] <= row["prompts_per_s"]


@pytest.mark.slow
def test_ratios_are_taken_to_fp32_at_the_same_batch_size(report) -> None:
    for size in SIZES:
        group = {r["variant"]: r for r in report["results"] if r["batch_size"] == size}
        base = group["fp32"]
        assert base["ratio_to_fp32"] == 1
        assert base["size_ratio_to_fp32"] == 1
        for row in group.values():
            assert row["ratio_to_fp32"] == pytest.approx(
                row["prompts_per_s"] / base["prompts_per_s"]
            )
            assert row["size_ratio_to_fp32"] == pytest.approx(row["size_mb"] / base["size_mb"])
        winners = [r for r in group.values() if r["winner"]]
        assert len(winners) == 1
        assert winners[0]["prompts_per_s"] == max(r["prompts_per_s"] for r in group.values())


@pytest.mark.slow
def test_memory_size_and_cost(report) -> None:
    for row in report["results"]:
        assert row["load_s"] > 0
        assert row["peak_rss_mb"] > row["base_rss_mb"] > 0
        assert row["size_mb"] > 0
        assert row["usd_per_1m_tokens"] == pytest.approx(
            2.0 / (row["e2e_tokens_per_s"] * 3600) * 1e6
        )
    sizes = {r["variant"]: r["size_mb"] for r in report["results"]}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


@pytest.mark.slow
def test_synthetic_prompts_have_the_requested_length(tiny_model) -> None:
    tokenizer = TextTokenizer(tiny_model, 384)
    prompts = synthetic_prompts(tokenizer, 40, 5)
    assert len(set(prompts)) == 5
    assert [len(e.ids) for e in tokenizer.encode(prompts)] == [40] * 5


@pytest.mark.slow
def test_real_prompts_from_a_file(tiny_model) -> None:
    config = BenchConfig(
        tiny_model, variants=["int8"], batch_sizes=[8], data=SAMPLES / "prompts.jsonl", duration=0.1
    )
    report = run_bench(config)
    (row,) = report["results"]
    assert report["settings"]["prompts"] == 200
    assert row["ratio_to_fp32"] is None and row["winner"] is True
    assert 0 <= row["padding_share"] < 1
    assert "usd_per_1m_tokens" not in row


def test_bad_lists_are_usage_errors() -> None:
    with pytest.raises(GuardError) as err:
        parse_variants("fp32,fp64", ["fp32", "int8"])
    assert err.value.code == ExitCode.INPUT
    with pytest.raises(GuardError) as err:
        parse_variants("fp16", ["fp32", "int8"])
    assert err.value.code == ExitCode.MODEL
    assert parse_variants("int8,fp32", ["fp32", "int8"]) == ["fp32", "int8"]
    assert parse_variants("all", ["fp32", "fp16"]) == ["fp32", "fp16"]
    assert parse_batch_sizes("1, 8,8") == [1, 8]
    for bad in ("", "1,x", "0"):
        with pytest.raises(GuardError):
            parse_batch_sizes(bad)


# ---------------------------------------------------------------- CLI


def test_help(runner) -> None:
    result = invoke(runner, ["bench", "--help"])
    assert result.exit_code == 0
    for option in ("--synthetic", "--variant", "--batch-size", "--seq-len", "--price-per-hour"):
        assert option in result.stdout


def test_help_needs_no_onnxruntime_or_torch() -> None:
    code = without(*NOT_RUNTIME, "onnxruntime")
    result = subprocess.run(
        [sys.executable, "-c", code, "bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--price-per-hour" in result.stdout


@pytest.mark.slow
def test_cli_plain_text_data(runner, tiny_model, tmp_path) -> None:
    data = tmp_path / "prompts.txt"
    data.write_text("a lighthouse at dusk\n\na kettle on a stove, painted in oils\n")
    args = ["bench", "-m", str(tiny_model), "--variant", "int8", "--batch-size", "2"]
    result = invoke(runner, [*args, "--data", str(data), "--duration", "0.1", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["prompts"] == 2 and report["settings"]["data"] == str(data)
    (row,) = report["results"]
    assert row["padding_share"] > 0  # two lengths in one batch


def test_missing_catalog_model_suggests_synthetic(runner) -> None:
    result = invoke(runner, ["bench", "--duration", "0.1"])
    assert result.exit_code == ExitCode.MODEL
    assert "guard fetch csam-guard" in result.stderr
    assert "--synthetic" in result.stderr


@pytest.mark.slow
def test_cli_json(runner, tiny_model) -> None:
    args = ["bench", "-m", str(tiny_model), "--variant", "fp32,int8", "--batch-size", "1,2"]
    result = invoke(runner, [*args, "--seq-len", "12", "--duration", "0.2", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(r["variant"], r["batch_size"]) for r in report["results"]] == [
        ("fp32", 1),
        ("int8", 1),
        ("fp32", 2),
        ("int8", 2),
    ]
    assert report["settings"]["seq_len"] == 12
    assert "synthetic model" in result.stderr
    assert "synthetic" not in result.stdout.lower().replace('"synthetic": true', "")


@pytest.mark.slow
def test_cli_table_marks_the_winner_and_says_synthetic(runner, tiny_model) -> None:
    args = ["bench", "-m", str(tiny_model), "--variant", "fp32,fp16", "--batch-size", "2"]
    result = invoke(runner, [*args, "--duration", "0.1", "--price-per-hour", "1", "-f", "table"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "SYNTHETIC" in out
    assert "×fp32" in out and "1.00×" in out and "$ per 1M" in out
    assert out.count("★") == 2  # the winner's row and the summary line
    assert "fastest at batch 2:" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seq-len", "8", "--data", "x.jsonl"], "Give --seq-len or --data, not both."),
        (["--variant", "fp64"], "Unknown variant 'fp64'."),
        (["--batch-size", "a"], "is not a list of whole numbers"),
        (["--format", "csv"], "Unknown format 'csv'."),
        (["--synthetic"], "Give --model or --synthetic, not both."),
    ],
)
def test_cli_usage_errors(runner, tiny_model, extra, message) -> None:
    result = invoke(runner, ["bench", "-m", str(tiny_model), *extra])
    assert result.exit_code == ExitCode.INPUT
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
def test_a_broken_variant_is_a_model_error(runner, tiny_model, tmp_path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "onnx" / "model_quantized.onnx").write_bytes(b"not a graph")
    args = ["bench", "-m", str(broken), "--variant", "int8", "--duration", "0.1", "-f", "json"]
    result = invoke(runner, args)
    assert result.exit_code == ExitCode.MODEL
    assert "Benchmark worker for int8 failed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_synthetic_uses_the_cached_model(runner, tiny_model, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(tiny_model, cache / "synthetic" / "csam-guard-tiny-seed0")
    monkeypatch.setenv("GUARD_CACHE", str(cache))
    args = ["bench", "--synthetic", "--variant", "int8", "--batch-size", "1", "--duration", "0.1"]
    result = invoke(runner, [*args, "-f", "json"])
    assert result.exit_code == 0, result.stderr
    model = json.loads(result.stdout)["model"]
    assert model["synthetic"] is True
    assert model["path"] == str(cache / "synthetic" / "csam-guard-tiny-seed0")
    assert "synth:" not in result.stderr  # built once, not again


def test_a_model_without_graphs_is_refused_clearly() -> None:
    from guardcli.core.errors import GuardError
    from guardcli.jobs.bench.runner import parse_variants

    with pytest.raises(GuardError, match="no variant to benchmark"):
        parse_variants("all", [])


@pytest.mark.slow
def test_a_closed_worker_leaves_no_open_pipe() -> None:
    """Closing a worker closes its pipes (no ResourceWarning in a bench run's stderr)."""
    import gc
    import warnings

    from guardcli.jobs.bench.runner import _WorkerProcess

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = _WorkerProcess("fp32")
        worker.close()
        del worker
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_missing_variant_names_the_folder_and_the_command(runner, tiny_model, tmp_path) -> None:
    """A synthetic bench's model lives in guard's cache: the message says where, and how to
    make the variant there."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder, ignore=shutil.ignore_patterns("model_quantized.onnx"))
    result = invoke(runner, ["bench", "-m", str(folder), "--variant", "int8"])
    assert result.exit_code != 0 and result.stdout == ""
    assert f"{folder} has no int8 variant" in result.stderr
    assert f"guard quantize {folder} --to int8" in result.stderr
