"""`guard export` on OpenCC folders: LoRA merged, base + pooling + head in one ONNX graph, checked
against the spec's torch + peft rebuild; the onnxruntime backend of the opencc family; Qwen3.5
bases refused plainly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from guardcli.core.errors import GuardError
from guardcli.core.resolve import resolve
from guardcli.families.loader import load_guard
from guardcli.families.opencc.frame import HARM_CATEGORIES

from ...conftest import SAMPLES, invoke
from ...families.opencc.test_opencc import TEXTS, reference_probs, reference_tokenizer

PROMPTS = [json.loads(line)["text"] for line in (SAMPLES / "prompts.jsonl").open()][:12] + TEXTS


@pytest.fixture(scope="module")
def exported_cm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenCC content-moderation model on a Qwen3 base, exported in place by the CLI."""
    from typer.testing import CliRunner

    from guardcli.families.opencc.synthetic import synth_opencc

    path = synth_opencc(tmp_path_factory.mktemp("models") / "opencc-cm-q3", base="qwen3")
    result = invoke(CliRunner(), ["export", str(path)])  # no --out: in place
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(path)
    assert "against torch + peft on 6 prompts" in result.stderr
    return path


@pytest.fixture(scope="module")
def fp32_logits(exported_cm: Path) -> np.ndarray:
    """The spec's torch + peft rebuild in FP32 (LoRA unmerged): head logits of PROMPTS."""
    return reference_probs(exported_cm, PROMPTS, torch.float32, logits_only=True)


@pytest.mark.slow
def test_onnx_logits_match_the_torch_peft_rebuild(exported_cm: Path, fp32_logits) -> None:
    import onnxruntime as ort

    tok = reference_tokenizer(exported_cm)
    enc = tok(PROMPTS, padding=True, truncation=True, max_length=512, return_tensors="np")
    assert (enc["attention_mask"] == 0).any()  # a padded batch
    session = ort.InferenceSession(str(exported_cm / "onnx" / "model.onnx"))
    feed = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
    got = session.run(["logits"], feed)[0]
    expected = fp32_logits
    assert got.shape == (len(PROMPTS), 12)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    info = json.loads((exported_cm / "onnx" / "opencc_export.json").read_text())
    assert info["lora_merged"] and info["max_abs_diff"] <= 1e-4
    assert info["architecture"] == "Qwen3ForCausalLM"


@pytest.mark.slow
def test_onnx_backend_gives_the_torch_verdicts(exported_cm: Path, fp32_logits) -> None:
    assert resolve(exported_cm).variant == "lora"  # torch stays the default
    onnx = load_guard(exported_cm, backend="onnxruntime").classify(PROMPTS)
    torch_ = load_guard(exported_cm, backend="torch", dtype="bfloat16").classify(PROMPTS)
    by_variant = load_guard(exported_cm, variant="fp32").classify(PROMPTS[:4])
    assert [v.to_dict() for v in by_variant] == [v.to_dict() for v in onnx[:4]]
    expected = 1.0 / (1.0 + np.exp(-fp32_logits))  # multilabel: sigmoid
    flags = 0
    for o, t, row in zip(onnx, torch_, expected, strict=True):
        assert (o.variant, t.variant) == ("fp32", "lora-bf16")
        assert list(o.categories) == list(t.categories) == list(HARM_CATEGORIES)
        got = np.array([o.categories[c]["score"] for c in HARM_CATEGORIES])
        np.testing.assert_allclose(got, row[1:], atol=1e-5)  # the FP32 rebuild
        for name in HARM_CATEGORIES:
            oc, tc = o.categories[name], t.categories[name]
            assert oc["threshold"] == tc["threshold"]
            # torch runs the base in bf16 as the authors do; the graph is FP32
            assert abs(oc["score"] - tc["score"]) < 0.02
            if abs(tc["score"] - tc["threshold"]) > 0.02:
                assert oc["flagged"] == tc["flagged"], (o.id, name)
                flags += tc["flagged"]
        assert o.flagged == any(c["flagged"] for c in o.categories.values())
        assert o.score == max(c["score"] for c in o.categories.values())
    assert flags  # the comparison saw flagged categories, not only allowed ones


@pytest.mark.slow
def test_cli_backend_onnxruntime(runner, exported_cm: Path) -> None:
    args = ["classify", "-m", str(exported_cm), "-f", "jsonl", "-q", "-"]
    result = invoke(runner, [*args, "--backend", "onnxruntime"], input="hello there\nhi\n")
    assert result.exit_code in (0, 1), result.stderr
    verdicts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["variant"] for v in verdicts] == ["fp32", "fp32"]
    assert result.exit_code == (1 if any(v["flagged"] for v in verdicts) else 0)
    result = invoke(runner, [*args, "--backend", "openvino"], input="hi\n")
    assert result.exit_code == 2 and "runs on torch or onnxruntime" in result.stderr


@pytest.mark.slow
def test_onnx_only_folder_runs_without_base_adapter_or_head(
    exported_cm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "onnx-only"
    from guardcli.families.opencc.export import export_opencc

    result = export_opencc(exported_cm, out)
    assert result.ok and result.out == out
    assert not (out / "base").exists() and not (out / "adapter_model.safetensors").exists()
    model = resolve(out)
    assert (model.family, model.variant) == ("opencc", "fp32")  # only the graph can run
    got = load_guard(out).classify(TEXTS)
    same = load_guard(exported_cm, backend="onnxruntime").classify(TEXTS)
    assert [v.to_dict() for v in got] == [v.to_dict() for v in same]
    with pytest.raises(GuardError, match="has no int8 variant .found: lora, fp32"):
        resolve(exported_cm, "int8")


@pytest.mark.slow
def test_a_changed_head_makes_the_graph_stale(exported_cm: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(exported_cm, copy, ignore=shutil.ignore_patterns(".cache"))
    state = torch.load(copy / "classification_head.pt", weights_only=True)
    state["bias"] = state["bias"] + 1.0
    torch.save(state, copy / "classification_head.pt")
    guard = load_guard(copy, backend="onnxruntime")
    with pytest.raises(GuardError, match="exported from another classification_head.pt"):
        guard.classify(["hello"])


def test_qwen35_base_is_refused_plainly(runner, opencc_cm: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = invoke(runner, ["export", str(opencc_cm), "--out", str(out)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert "Qwen3.5's Gated DeltaNet linear attention does not export to ONNX" in result.stderr
    assert "`guard classify -m DIR` does so by default" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (opencc_cm / "onnx").exists()
    result = invoke(runner, ["classify", "-m", str(opencc_cm), "--backend", "onnxruntime", "hi"])
    assert result.exit_code == 3 and "guard export" in result.stderr


@pytest.mark.slow
def test_bench_times_the_graph_beside_the_lora(exported_cm: Path) -> None:
    from guardcli.jobs.bench.runner import BenchConfig, model_variants, run_bench

    assert model_variants(exported_cm) == ["fp32", "lora"]
    config = BenchConfig(
        exported_cm,
        variants=["fp32", "lora"],
        batch_sizes=[2],
        seq_len=16,
        duration=0.2,
        agreement_prompts=8,
    )
    report = run_bench(config)
    rows = {r["variant"]: r for r in report["results"]}
    assert rows["fp32"]["backend"].startswith("onnxruntime")
    assert rows["lora"]["backend"] == "torch-cpu"
    # FP32 ONNX is the reference; the bf16 torch path stays close to it.
    assert rows["lora"]["max_abs_diff_vs_fp32"] < 0.02
