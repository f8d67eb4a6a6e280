"""`guard bench` beyond ONNX sequence classifiers: qwen3guard-gen in generate and score mode
(ONNX KV-cache graph and torch), OpenCC's LoRA on torch, the dialogue family. Structure and
invariants on tiny models, never speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.core.errors import ExitCode, GuardError
from guardcli.jobs.bench.runner import BenchConfig, model_variants, parse_variants, run_bench

from ..conftest import invoke

SEQ_LEN = 8
AGREEMENT = 8
MODES = ["generate", "score"]
TEMPLATE_HEAD = 199  # tokens of Qwen3Guard's prompt template before the conversation (spec §2)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def gen_model() -> Path:
    """The tiny trained Qwen3Guard-Gen (built once per builder version, tests/model_store.py)."""
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    return cached_tiny_qwen3guard()


def _config(model: Path, variants: list[str], **kw) -> BenchConfig:
    kw.setdefault("batch_sizes", [2])
    kw.setdefault("seq_len", SEQ_LEN)
    return BenchConfig(model, variants=variants, duration=0.2, agreement_prompts=AGREEMENT, **kw)


@pytest.fixture(scope="module")
def gen_report(gen_model: Path) -> dict:
    # float32 on torch (--dtype; auto would pick bfloat16 on CPUs with native bf16): the
    # agreement bounds below are float32's.
    return run_bench(_config(gen_model, ["fp32", "torch"], dtype="float32"))


def _invariants(row: dict) -> None:
    assert row["batches"] >= 1
    assert row["prompts"] == row["batches"] * row["batch_size"]
    assert row["prompts_per_s"] == pytest.approx(row["prompts"] / row["measured_s"])
    assert row["tokens_per_s"] == pytest.approx(row["tokens"] / row["measured_s"])
    assert row["e2e_prompts_per_s"] <= row["prompts_per_s"]
    assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert row["load_s"] > 0 and row["size_mb"] > 0


# ---------------------------------------------------------------- qwen3guard-gen


def test_generative_rows_per_mode_and_variant(gen_report) -> None:
    rows = gen_report["results"]
    assert [(r["variant"], r["mode"]) for r in rows] == [
        ("fp32", "generate"),
        ("torch", "generate"),
        ("fp32", "score"),
        ("torch", "score"),
    ]
    assert {r["variant"]: r["backend"] for r in rows} == {
        "fp32": "onnxruntime-cpu",
        "torch": "torch-cpu",
    }
    settings = gen_report["settings"]
    assert settings["modes"] == MODES and settings["reference"] == "fp32"
    assert gen_report["model"]["family"] == "qwen3guard-gen"
    assert gen_report["machine"]["torch"]
    for row in rows:
        _invariants(row)
        # The input is the rendered chat template around each prompt, not the prompt alone.
        assert row["tokens"] > row["prompts"] * (TEMPLATE_HEAD + SEQ_LEN)
    for mode in MODES:
        group = [r for r in rows if r["mode"] == mode]
        assert sum(r["winner"] for r in group) == 1
        assert group[0]["ratio_to_fp32"] == 1
    json.dumps(gen_report)


def test_generate_mode_counts_new_tokens_and_compares_severities(gen_report) -> None:
    for row in (r for r in gen_report["results"] if r["mode"] == "generate"):
        # Every answer ends with EOS and stops at 128 new tokens.
        assert row["prompts"] <= row["generated_tokens"] <= 128 * row["prompts"]
        assert row["generated_tokens_per_s"] == pytest.approx(
            row["generated_tokens"] / row["measured_s"]
        )
        assert row["max_abs_diff_vs_ref"] is None  # --no-score: no scores to compare
        assert 0 <= row["severity_agreement_vs_ref"] <= 1
        assert 0 <= row["flag_agreement_vs_ref"] <= 1
    fp32 = gen_report["results"][0]
    assert fp32["severity_agreement_vs_ref"] == 1 and fp32["max_abs_diff_vs_fp32"] is None


def test_score_mode_agreement_matches_classify_on_both_backends(gen_report, gen_model) -> None:
    """max |Δscore| equals what the two backends' score mode gives through load_guard."""
    from guardcli.families.loader import load_guard
    from guardcli.jobs.bench.runner import synthetic_prompts

    onnx = load_guard(gen_model, variant="fp32", generate=False, batch_size=8)
    torch = load_guard(gen_model, backend="torch", generate=False, batch_size=8, dtype="float32")
    texts = synthetic_prompts(onnx.tokenizer, SEQ_LEN, 64)[:AGREEMENT]
    a, b = onnx.classify(texts), torch.classify(texts)
    expected = max(abs(x.score - y.score) for x, y in zip(a, b, strict=True))
    rows = {r["variant"]: r for r in gen_report["results"] if r["mode"] == "score"}
    assert rows["fp32"]["max_abs_diff_vs_ref"] == 0
    assert rows["torch"]["max_abs_diff_vs_ref"] == pytest.approx(expected, abs=2e-6)
    assert rows["torch"]["max_abs_diff_vs_ref"] < 1e-3
    assert rows["torch"]["flag_agreement_vs_ref"] == rows["torch"]["flag_agreement_vs_fp32"]
    assert "severity_agreement_vs_ref" not in rows["torch"]
    assert "generated_tokens" not in rows["torch"]


def test_variants_of_each_family(gen_model, opencc_cm, tiny_model) -> None:
    assert model_variants(gen_model) == ["fp32", "torch"]
    assert model_variants(opencc_cm) == ["lora"]
    assert model_variants(tiny_model)[:3] == ["fp32", "fp16", "int8"]
    present = ["fp32", "torch"]
    assert parse_variants("all", present) == ["fp32", "torch"]
    assert parse_variants("all", present, "torch") == ["torch"]
    assert parse_variants("fp32", present, "torch") == ["torch"]
    assert parse_variants("all", present, "onnxruntime") == ["fp32"]
    assert parse_variants("all", ["lora"], "torch") == ["lora"]
    with pytest.raises(GuardError, match="The torch variant does not run on onnxruntime"):
        parse_variants("torch", present, "onnxruntime")
    with pytest.raises(GuardError, match="The int8 variant does not run on torch"):
        parse_variants("int8", present, "torch")
    with pytest.raises(GuardError, match="runs with torch only"):
        parse_variants("fp32", ["lora"])


def test_table_shows_modes_new_tokens_and_agreement(gen_report, capsys) -> None:
    from guardcli.cli.bench import render_table

    render_table(gen_report)
    out = capsys.readouterr().out
    assert "mode" in out and "new tok/s" in out and "agree" in out and "vs fp32" in out
    assert f"torch {gen_report['machine']['torch']}" in out
    for mode in MODES:
        assert f"fastest at batch 2 ({mode}):" in out
    assert "per variant × mode × batch" in out


def test_cli_score_mode_json(runner, gen_model) -> None:
    args = ["bench", "-m", str(gen_model), "--variant", "fp32", "--mode", "score"]
    result = invoke(runner, [*args, "--batch-size", "1", "--duration", "0.1", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    (row,) = report["results"]
    assert (row["variant"], row["mode"], row["backend"]) == ("fp32", "score", "onnxruntime-cpu")
    assert row["max_abs_diff_vs_ref"] == 0 and row["flag_agreement_vs_ref"] == 1
    assert "benchmarking fp32 (score) at batch 1" in result.stderr


@pytest.mark.parametrize(
    ("which", "extra", "code", "message"),
    [
        ("gen", ["--mode", "sample"], ExitCode.INPUT, "Unknown mode 'sample'."),
        ("gen", ["--backend", "openvino"], ExitCode.MODEL, "no variant to benchmark on openvino"),
        ("csam", ["--mode", "score"], ExitCode.INPUT, "--mode does not apply to the seqcls"),
        ("opencc", ["--variant", "fp32"], ExitCode.MODEL, "no fp32 variant (found: lora)"),
    ],
)
def test_cli_family_errors(
    runner, gen_model, tiny_model, opencc_cm, which, extra, code, message
) -> None:
    model = {"gen": gen_model, "csam": tiny_model, "opencc": opencc_cm}[which]
    result = invoke(runner, ["bench", "-m", str(model), *extra, "--duration", "0.1"])
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert result.stdout == ""


# ---------------------------------------------------------------- OpenCC and dialogue


def test_opencc_lora_on_torch(opencc_cm) -> None:
    report = run_bench(_config(opencc_cm, ["lora"]))
    (row,) = report["results"]
    assert (row["variant"], row["mode"], row["backend"]) == ("lora", None, "torch-cpu")
    assert report["settings"]["modes"] == [] and report["model"]["family"] == "opencc"
    _invariants(row)
    # Raw text: the synthetic prompts are SEQ_LEN tokens each with the model's own tokenizer.
    assert row["tokens"] == row["prompts"] * SEQ_LEN and row["padding_share"] == 0
    base = sorted((opencc_cm / "base").glob("*.safetensors"))
    files = [opencc_cm / "adapter_model.safetensors", *opencc_cm.glob("*_head.pt"), *base]
    assert row["size_mb"] == pytest.approx(sum(f.stat().st_size for f in files) / 1e6)
    assert row["flag_agreement_vs_ref"] == 1 and row["max_abs_diff_vs_ref"] == 0
    assert row["max_abs_diff_vs_fp32"] is None  # no FP32 graph to compare with


def test_dialogue_family_keeps_its_onnx_rows(intent_model) -> None:
    report = run_bench(_config(intent_model, ["fp32", "int8"]))
    rows = report["results"]
    assert [(r["variant"], r["mode"]) for r in rows] == [("fp32", None), ("int8", None)]
    for row in rows:
        _invariants(row)
    assert rows[0]["max_abs_diff_vs_fp32"] == 0 and rows[1]["flag_agreement_vs_fp32"] is not None


@pytest.mark.slow
def test_synthetic_family_builds_and_benches_that_family(runner) -> None:
    """`--synthetic --family hf-seqcls` builds the encoder classifier (cached in guard's cache)
    and benches it like any ONNX classifier."""
    args = ["bench", "--synthetic", "--family", "hf-seqcls", "--variant", "fp32,int8"]
    result = invoke(runner, [*args, "--batch-size", "1", "--duration", "0.2", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert "hf-seqcls-tiny" in report["model"]["path"]
    assert [r["variant"] for r in report["results"]] == ["fp32", "int8"]
    assert all(r["prompts_per_s"] > 0 for r in report["results"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "hf-seqcls"], "--family chooses the model --synthetic builds"),
        (["--synthetic", "--family", "nope"], "No synthetic builder for 'nope'"),
    ],
)
def test_synthetic_family_is_checked_at_the_door(runner, args, message) -> None:
    result = invoke(runner, ["bench", *args, "--duration", "0.1"])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
