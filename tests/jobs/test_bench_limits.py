"""`guard bench --limits`: each row's GOP/s and its share of this machine's GEMM limit."""

from __future__ import annotations

import json

import pytest

from guardcli.jobs.bench.limits import limit_lines
from guardcli.runtime.gemm_limits import theoretical_peak
from guardcli.runtime.graph_ops import graph_ops

from ..conftest import invoke


def test_theoretical_peak_from_simd_width_and_clock():
    avx512 = theoretical_peak({"avx512f", "avx512_vnni", "avx2"}, cores=2, ghz=2.0)
    assert avx512["gops"] == {"fp32": 2 * 16 * 2 * 2.0 * 2, "int8": 2 * 16 * 8 * 2.0 * 2}
    amx = theoretical_peak({"avx512f", "amx_int8", "amx_bf16"}, cores=1, ghz=1.0)["gops"]
    assert amx["int8"] == 2048 and amx["bf16"] == 1024
    assert theoretical_peak({"avx2"}, cores=2, ghz=None)["gops"] is None


def test_the_limit_is_each_shapes_fastest_run_weighted_by_its_count(monkeypatch, tmp_path):
    """Per precision: total operations / total time, each shape timed by its fastest run (not
    its median), the fastest path named; cached per CPU and model shapes."""
    from guardcli.runtime import gemm_check, gemm_limits
    from guardcli.runtime.gemm_check import MatMulTiming

    # (variant, median ms, best ms) per shape (M=4, K, N)
    timings = {
        (4, 8, 16): [("fp32", 2.0, 1.0), ("int8", 1.0, 0.5), ("ov-int8", 0.8, 0.6)],
        (4, 16, 8): [("fp32", 4.0, 2.0), ("int8", 2.0, 0.5), ("ov-int8", 1.0, 0.9)],
    }

    def fake_verify(shape, **_):
        return [
            MatMulTiming(v, ms=med, gflops=0.0, ratio=1.0, runs=5, best_ms=best)
            for v, med, best in timings[shape]
        ]

    monkeypatch.setattr(gemm_check, "verify", fake_verify)
    monkeypatch.setattr(gemm_limits, "cache_path", lambda: tmp_path / "limits.json")
    weights = {(8, 16): 3, (16, 8): 1}
    got = gemm_limits.measure(4, weights, threads=2, fresh=True)
    ops = 2.0 * 4 * 8 * 16 * 4  # both shapes have the same operations; 4 MatMuls in all
    seconds = {"fp32": 3 * 1.0 + 2.0, "int8": 3 * 0.5 + 0.5, "ov-int8": 3 * 0.6 + 0.9}
    for path, ms in seconds.items():
        assert got["paths"][path] == pytest.approx(ops / (ms / 1e3) / 1e9)
    assert got["limits"]["int8"]["path"] == "int8"
    assert got["limits"]["fp32"]["gops"] == pytest.approx(ops / 5e-3 / 1e9)
    assert gemm_limits.measure(4, weights, threads=2)["cached"] is True


@pytest.mark.slow  # measures GEMMs on the model's shapes with onnxruntime and OpenVINO
def test_bench_rows_carry_their_share_of_the_measured_limit(runner, tiny_model, quick_gemm_timing):
    args = ["bench", "-m", str(tiny_model), "--variant", "fp32,int8", "--batch-size", "2"]
    args += ["--seq-len", "12", "--duration", "0.2", "--limits", "-f", "json"]
    first = json.loads(invoke(runner, args).stdout)
    limits = first["limits"]
    assert limits["seq_len"] == 12 and limits["by_batch"]["2"]["m"] == 24
    assert limits["by_batch"]["2"]["cached"] is False
    measured = limits["by_batch"]["2"]
    ops = graph_ops(tiny_model / "onnx" / "model.onnx")
    for row in first["results"]:
        precision = {"fp32": "fp32", "int8": "int8"}[row["variant"]]
        limit = measured["limits"][precision]
        paths = (row["variant"], f"ov-{row['variant']}")
        assert limit["gops"] == max(r for p, r in measured["paths"].items() if p in paths)
        tokens = row["tokens"] / row["prompts"]
        assert row["ops_per_token"] == pytest.approx(ops.per_token(tokens))
        achieved = row["ops_per_token"] * row["tokens_per_s"] / 1e9
        assert row["achieved_gops"] == pytest.approx(achieved)
        assert row["reused_tokens"] == 0  # a classifier reuses no template head
        assert row["share_of_limit"] == pytest.approx(row["achieved_gops"] / limit["gops"])
    again = json.loads(invoke(runner, args).stdout)
    assert again["limits"]["by_batch"]["2"]["cached"] is True  # once per CPU and shapes
    table = invoke(runner, [*args[:-2], "-f", "table"]).stdout
    assert "limit at batch 2 (M=24" in table and "% of" in table


@pytest.mark.slow  # --verify times the default shape on every path too
def test_probe_cpu_verify_model_measures_the_limit_bench_reuses(
    runner, tiny_model, tmp_path, monkeypatch, quick_gemm_timing
):
    # --verify stores the measured variant order, which `--variant auto` then follows: kept
    # apart, so the other tests of this session still resolve auto as they expect.
    monkeypatch.setenv("GUARD_PROBE_RESULT", str(tmp_path / "probe.json"))
    probe = ["probe-cpu", "--verify", "-m", str(tiny_model), "--batch-size", "3"]
    report = json.loads(invoke(runner, [*probe, "--seq-len", "10", "-f", "json"]).stdout)
    measured = report["limits"]["by_batch"]["3"]
    assert measured["m"] == 30 and measured["limits"]["fp32"]["gops"] > 0
    ops = graph_ops(tiny_model / "onnx" / "model.onnx")
    assert report["limits"]["ops"]["ops_per_token"] == pytest.approx(ops.per_token(10))
    bench = ["bench", "-m", str(tiny_model), "--variant", "fp32", "--batch-size", "3"]
    again = json.loads(
        invoke(
            runner, [*bench, "--seq-len", "10", "--duration", "0.2", "--limits", "-f", "json"]
        ).stdout
    )
    assert again["limits"]["by_batch"]["3"]["cached"] is True
    assert again["limits"]["by_batch"]["3"]["paths"] == measured["paths"]
    # --verify always measures (a limit stored from a busy moment is replaced), with the share
    # of the CPU other work used meanwhile.
    remeasured = json.loads(invoke(runner, [*probe, "--seq-len", "10", "-f", "json"]).stdout)
    assert remeasured["limits"]["by_batch"]["3"]["cached"] is False
    assert 0.0 <= remeasured["limits"]["by_batch"]["3"]["other_work"] <= 1.0


def test_a_limit_timed_beside_other_work_says_so_and_how_to_measure_again():
    def report(other_work):
        measured = {"m": 96, "limits": {"int8": {"gops": 500.0, "path": "int8"}}}
        limits = {"seq_len": 48, "ops": {"ops_per_token": 1e9, "attention_ops_per_token": 1e7}}
        limits |= {"by_batch": {"2": {**measured, "other_work": other_work}}}
        return {"limits": {**limits, "peak": {"gops": None}}}

    busy = "\n".join(limit_lines(report(0.4)))
    assert "other work used 40% of the CPU" in busy
    assert "guard probe-cpu --verify --model MODEL --batch-size 2 --seq-len 48" in busy
    for quiet in (0.02, None):
        assert "other work" not in "\n".join(limit_lines(report(quiet)))


def test_probe_cpu_model_needs_verify(runner, tiny_model):
    result = invoke(runner, ["probe-cpu", "-m", str(tiny_model)])
    assert result.exit_code == 2 and "--verify" in result.stderr
