"""hf-seqcls through the CLI: classify (exit codes, --long, --unsafe-labels), synth, export;
folder detection and catalog entries."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ...conftest import invoke
from .conftest import ARCHES

runner = CliRunner()


# One architecture in the fast loop; every architecture in `make test` (each loads its own model).
@pytest.mark.parametrize(
    "arch", [ARCHES[0], *(pytest.param(a, marks=pytest.mark.slow) for a in ARCHES[1:])]
)
def test_classify_exit_codes_follow_the_threshold(hf_models, arch):
    from guardcli import load_guard

    folder = hf_models(arch)
    score = load_guard(folder, variant="fp32").classify(["hello world"])[0].score
    below, above = score / 2, (1 + score) / 2
    base = ["classify", "-m", str(folder), "--variant", "fp32", "--format", "jsonl", "-q"]
    flagged = invoke(runner, [*base, "--threshold", str(below), "hello world"])
    assert flagged.exit_code == 1, flagged.stderr
    row = json.loads(flagged.stdout)
    assert row["flagged"] is True and row["score"] == pytest.approx(score, abs=1e-5)
    assert row["model"] == "hf-seqcls" and row["variant"] == "fp32"
    allowed = invoke(runner, [*base, "--threshold", str(above), "-"], input="hello world\n")
    assert allowed.exit_code == 0, allowed.stderr
    assert json.loads(allowed.stdout)["flagged"] is False


def test_classify_long_segments_reports_the_window(hf_models):
    folder = hf_models("roberta")
    text = "tea lighthouse river bridge " * 30
    args = ["classify", "-m", str(folder), "--variant", "fp32", "--format", "jsonl"]
    result = invoke(runner, [*args, "--max-length", "16", "--long", "segments", text])
    assert result.exit_code in (0, 1), result.stderr
    row = json.loads(result.stdout)
    assert row["segment"]["count"] > 1 and row["truncated"] is False
    start, end = row["segment"]["start"], row["segment"]["end"]
    assert 0 <= start < end <= len(text)
    truncated = json.loads(invoke(runner, [*args, "--max-length", "16", text]).stdout)
    assert truncated["truncated"] is True and "segment" not in truncated


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--long", "chunks"], "--long 'chunks' is not a way to judge long inputs."),
        (
            ["--unsafe-labels", "toxic"],
            "--unsafe-labels names 'toxic', which is not a label of hf-seqcls.",
        ),
        (
            ["--unsafe-labels", "BENIGN,MALICIOUS"],
            "--unsafe-labels names every label of hf-seqcls: every text would be flagged.",
        ),
        (["--thresholds"], "single-label classifier with one threshold"),
    ],
)
def test_classify_bad_family_options_exit_2(hf_models, tmp_path, extra, message):
    if extra == ["--thresholds"]:
        path = tmp_path / "t.json"
        path.write_text('{"MALICIOUS": 0.3}')
        extra = ["--thresholds", str(path)]
    folder = hf_models("bert")
    result = invoke(runner, ["classify", "-m", str(folder), "--variant", "fp32", *extra, "hi"])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_unsafe_labels_on_the_command_line(hf_models):
    folder = hf_models("bert")
    args = ["classify", "-m", str(folder), "--variant", "fp32", "--format", "jsonl", "-q"]
    plain = json.loads(invoke(runner, [*args, "hello world"]).stdout)
    flipped = json.loads(invoke(runner, [*args, "--unsafe-labels", "benign", "hello world"]).stdout)
    assert flipped["score"] == pytest.approx(1 - plain["score"], abs=1e-5)


@pytest.mark.slow
def test_synth_cli_writes_a_runnable_model(tmp_path):
    out = tmp_path / "m"
    result = invoke(runner, ["synth", "hf-seqcls", "--arch", "bert", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "tokenizer trained on the fly" in result.stderr
    for name in ("onnx/model.onnx", "onnx/model_fp16.onnx", "onnx/model_quantized.onnx"):
        assert (out / name).is_file()
    marker = json.loads((out / "guardcli_synthetic.json").read_text())
    assert marker["family"] == "hf-seqcls" and marker["arch"] == "bert"
    bad = invoke(runner, ["synth", "hf-seqcls", "--arch", "gpt2", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "Unknown --arch 'gpt2'." in bad.stderr


@pytest.mark.parametrize("arch", ["bert", pytest.param("deberta-v2", marks=pytest.mark.slow)])
def test_export_of_an_encoder_checkpoint(tmp_path, arch):
    """`guard export` of an encoder *ForSequenceClassification: before hf-seqcls it took the
    decoder path (causal mask, last-token pooling, `model.score`) and failed."""
    from guardcli import load_guard
    from guardcli.families.hf_seqcls.synth import build_checkpoint

    from .test_scores import TEXTS, reference

    src = build_checkpoint(tmp_path / "src", arch)
    out = tmp_path / "out"
    result = invoke(runner, ["export", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "max |Δ logit|" in result.stderr
    guard = load_guard(out, variant="fp32")
    assert guard.family == "hf-seqcls"
    probs, _ = reference(src, TEXTS)
    scores = [v.score for v in guard.classify(TEXTS)]
    assert max(abs(s - p) for s, p in zip(scores, probs[:, 1], strict=True)) <= 1e-4


def test_folder_detection(hf_models, tmp_path):
    from guardcli.core.resolve import local_family

    assert local_family(hf_models("modernbert")) == "hf-seqcls"
    decoder = tmp_path / "qwen"
    decoder.mkdir()
    config = {"architectures": ["Qwen3ForSequenceClassification"], "model_type": "qwen3"}
    (decoder / "config.json").write_text(json.dumps(config))
    assert local_family(decoder) == "seqcls"
    config = {**config, "model_type": "bert", "guardcli": {"exported_from": "seqcls"}}
    (decoder / "config.json").write_text(json.dumps(config))
    assert local_family(decoder) == "seqcls"


def test_catalog_entries():
    from guardcli.core.catalog import BUILTIN
    from guardcli.families.hf_seqcls.guard import CATALOG_UNSAFE_LABELS

    repos = {e.repo: e for e in BUILTIN.values() if e.family == "hf-seqcls"}
    assert set(repos) == {
        "meta-llama/Llama-Prompt-Guard-2-86M",
        "meta-llama/Llama-Prompt-Guard-2-22M",
        "protectai/deberta-v3-base-prompt-injection-v2",
        "ibm-granite/granite-guardian-hap-38m",
        "ibm-granite/granite-guardian-hap-125m",
        "unitary/unbiased-toxic-roberta",
    }
    assert all(e.max_length == 512 and e.runs_onnx for e in repos.values())
    assert set(CATALOG_UNSAFE_LABELS) <= {e.name for e in repos.values()}
    result = invoke(runner, ["models"])
    assert "llama-prompt-guard-2-86m" in result.stdout


def test_catalog_unsafe_labels_apply_to_a_catalog_name(hf_multilabel, monkeypatch):
    """A model resolved under a catalog name takes that entry's unsafe labels (the toxicity
    entry counts harm labels only)."""
    import dataclasses

    from guardcli.core.resolve import resolve
    from guardcli.families.hf_seqcls.guard import HfSeqClsGuard

    model = dataclasses.replace(resolve(hf_multilabel, "fp32"), name="unbiased-toxic-roberta")
    guard = HfSeqClsGuard(model)
    names = [guard.labels.names[i] for i in guard.labels.unsafe]
    # the synthetic head has toxicity, severe_toxicity, obscene, threat, insult, identity_attack
    assert names == [
        "toxicity",
        "severe_toxicity",
        "obscene",
        "threat",
        "insult",
        "identity_attack",
    ]
    assert HfSeqClsGuard(
        dataclasses.replace(model, name="x"), unsafe_labels="threat"
    ).labels.unsafe == (3,)
