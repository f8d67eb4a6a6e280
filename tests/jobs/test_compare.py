"""`guard compare`'s figures against a direct computation: load_guard per variant, scikit-learn
for recall and precision, numpy for the percentiles, perturbed texts scored one by one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard

from ..conftest import SAMPLES, invoke

RECORDS = [json.loads(line) for line in (SAMPLES / "labelled.jsonl").open()][:120]


_GUARDS: dict = {}


def scored(model: Path, variant: str, texts: list[str], threshold: float):
    """Scores and decisions of `variant`, straight from load_guard (one guard per variant)."""
    if (model, variant) not in _GUARDS:
        guard = load_guard(model, variant=variant)
        if _GUARDS:  # the same tokenizer.json: load it once
            guard.tokenizer = next(iter(_GUARDS.values())).tokenizer
        _GUARDS[model, variant] = guard
    guard = _GUARDS[model, variant]
    guard.threshold = threshold
    verdicts = guard.classify(texts)
    return np.array([v.score for v in verdicts]), np.array([v.flagged for v in verdicts])


@pytest.fixture(scope="module")
def threshold(tiny_model: Path) -> float:
    """The FP32 median, so that decisions sit near the threshold and INT8 flips some."""
    scores, _ = scored(tiny_model, "fp32", [r["text"] for r in RECORDS], 0.5)
    return float(np.median(scores))


def run_json(runner, args: list[str]) -> dict:
    result = invoke(runner, ["compare", *args, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_compare_figures_equal_a_direct_computation(
    runner, tiny_model: Path, threshold, tmp_path: Path, skm
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    args = ["--data", str(data), "--no-stability", "--variants", "fp16,int8"]
    report = run_json(runner, [str(tiny_model), *args, "--threshold", str(threshold)])
    texts = [r["text"] for r in RECORDS]
    ids = [r["id"] for r in RECORDS]
    labels = np.array([r["label"] for r in RECORDS])
    base_scores, base_flags = scored(tiny_model, "fp32", texts, threshold)
    assert report["n"] == len(RECORDS) and report["labelled"] == len(RECORDS)
    assert report["threshold"] == threshold
    assert list(report["variants"]) == ["fp32", "fp16", "int8"]
    recall0 = skm.recall_score(labels, base_flags)
    precision0 = skm.precision_score(labels, base_flags)
    assert report["variants"]["fp32"]["recall"] == pytest.approx(recall0)
    assert report["variants"]["fp32"]["precision"] == pytest.approx(precision0)
    for variant in ("fp16", "int8"):
        scores, flags = scored(tiny_model, variant, texts, threshold)
        entry = report["variants"][variant]
        flipped = [i for i, a, b in zip(ids, base_flags, flags, strict=True) if a != b]
        assert entry["flips"]["ids"] == flipped
        assert entry["flips"]["count"] == len(flipped)
        assert entry["flips"]["rate"] == pytest.approx(len(flipped) / len(RECORDS))
        delta = np.abs(scores - base_scores)
        assert entry["delta"]["max"] == pytest.approx(delta.max(), abs=1e-12)
        assert entry["delta"]["p99"] == pytest.approx(np.percentile(delta, 99), abs=1e-12)
        assert entry["recall_change"] == pytest.approx(skm.recall_score(labels, flags) - recall0)
        assert entry["precision_change"] == pytest.approx(
            skm.precision_score(labels, flags) - precision0
        )
    assert report["variants"]["int8"]["flips"]["count"] > 0  # the check has teeth here


@pytest.mark.slow
def test_stability_equals_a_direct_computation(runner, tiny_model: Path, threshold) -> None:
    subset = RECORDS[:20]
    data = "".join(json.dumps(r) + "\n" for r in subset)
    result = invoke(
        runner,
        [
            "compare",
            str(tiny_model),
            "--data",
            "-",
            "--variants",
            "int8",
            "--threshold",
            str(threshold),
            "--format",
            "json",
        ],
        input=data,
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["perturbations"] == ["trailing_newline", "double_space", "case"]
    perturb = {
        "trailing_newline": lambda t: t + "\n",
        "double_space": lambda t: t.replace(" ", "  "),
        "case": lambda t: t.lower() if t.lower() != t else t.upper(),
    }
    for variant in ("fp32", "int8"):
        texts = [r["text"] for r in subset]
        _, flags = scored(tiny_model, variant, texts, threshold)
        for name, transform in perturb.items():
            changed = [i for i, t in enumerate(texts) if transform(t) != t]
            _, new = scored(tiny_model, variant, [transform(texts[i]) for i in changed], threshold)
            flips = [subset[i]["id"] for i, f in zip(changed, new, strict=True) if f != flags[i]]
            got = report["variants"][variant]["stability"][name]
            assert got["n"] == len(changed)
            assert got["ids"] == flips and got["flips"] == len(flips)
            assert got["rate"] == pytest.approx(len(flips) / len(changed))


@pytest.mark.slow
def test_compare_table_bad_records_and_gate(runner, tiny_model: Path, threshold, tmp_path) -> None:
    data = tmp_path / "d.jsonl"
    lines = [json.dumps({"id": "x1", "text": "a kettle on the stove"}), "{broken", ""]
    lines += [json.dumps(r) for r in RECORDS[:40]]
    data.write_text("\n".join(lines) + "\n")
    args = ["--data", str(data), "--no-stability", "--threshold", str(threshold)]
    args += ["--variants", "int8", "--format", "table", "--max-flip-rate", "0"]
    result = invoke(runner, ["compare", str(tiny_model), *args])
    texts = [r["text"] for r in RECORDS[:40]]
    fp32 = scored(tiny_model, "fp32", texts, threshold)[1]
    int8 = scored(tiny_model, "int8", texts, threshold)[1]
    assert result.exit_code == (1 if (fp32 != int8).any() else 0)
    # the blank line is skipped (no record); the broken one is left out
    assert f"n 41 (40 labelled, 1 left out), threshold {threshold:g}" in result.stdout
    assert "Against FP32" in result.stdout and "int8" in result.stdout
    assert "note: 1 record(s) could not be scored: left out" in result.stderr
    assert "1 record(s) without a label are left out of recall and precision" in result.stderr


def test_compare_needs_the_variants(runner, tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "m"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns("model_*.onnx"))
    result = invoke(
        runner, ["compare", str(model), "--data", str(SAMPLES / "labelled.jsonl"), "-f", "json"]
    )
    assert result.exit_code == 3
    assert f"{model} has no fp16 variant (found: fp32)." in result.stderr
    assert "guard quantize" in result.stderr
    result = invoke(runner, ["compare", str(model), "--data", "x", "--variants", "int4"])
    assert result.exit_code == 2 and "Unknown variant int4 in --variants." in result.stderr
