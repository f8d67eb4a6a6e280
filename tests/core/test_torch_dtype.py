"""Torch precision is a choice: --dtype float32|bfloat16 (auto: bfloat16 only with native
bf16) for OpenCC and qwen3guard-gen on torch, checked against the reference in the same dtype
and named in every verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from guardcli.core.cpu import CpuInfo
from guardcli.core.errors import GuardError
from guardcli.core.torch_dtype import resolve_dtype
from guardcli.families.loader import load_guard
from guardcli.families.opencc.frame import HARM_CATEGORIES

from ..conftest import invoke
from ..families.opencc.test_opencc import TEXTS, reference_probs


def _cpu(monkeypatch, flags: set[str]) -> None:
    import guardcli.core.cpu

    info = CpuInfo("x86_64", "test cpu", flags, "test")
    monkeypatch.setattr(guardcli.core.cpu, "read_cpu", lambda path=None: info)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"avx2", "avx512f", "avx512_vnni"}, "float32"),
        ({"avx2", "avx512_bf16"}, "bfloat16"),
        ({"amx_bf16", "amx_tile"}, "bfloat16"),
        (set(), "float32"),
    ],
)
def test_auto_is_bfloat16_only_with_native_bf16(flags, expected):
    assert resolve_dtype(None, flags) == expected
    assert resolve_dtype("auto", flags) == expected
    assert resolve_dtype("float32", {"amx_bf16"}) == "float32"
    assert resolve_dtype("bfloat16", set()) == "bfloat16"


def test_an_unknown_dtype_is_an_input_error():
    with pytest.raises(GuardError) as err:
        resolve_dtype("float16")
    assert err.value.code == 2 and "Unknown --dtype 'float16'" in str(err.value)


@pytest.mark.slow
def test_float32_equals_the_reference_rebuild_in_float32(opencc_cm: Path) -> None:
    verdicts = load_guard(opencc_cm, dtype="float32").classify(TEXTS)
    expected = reference_probs(opencc_cm, TEXTS, dtype=torch.float32)
    for v, row in zip(verdicts, expected, strict=True):
        got = np.array([v.categories[c]["score"] for c in HARM_CATEGORIES])
        np.testing.assert_allclose(got, row[1:], atol=1e-5, rtol=0)
        assert v.variant == "lora-fp32"


@pytest.mark.slow
def test_float32_jailbreak_equals_the_reference_in_float32(opencc_jb: Path) -> None:
    verdicts = load_guard(opencc_jb, dtype="float32").classify(TEXTS)
    expected = reference_probs(opencc_jb, TEXTS, dtype=torch.float32)[:, 1]
    np.testing.assert_allclose([v.score for v in verdicts], expected, atol=1e-5, rtol=0)
    assert {v.variant for v in verdicts} == {"lora-fp32"}


@pytest.mark.slow
def test_bfloat16_equals_the_reference_in_bfloat16_and_says_so(opencc_cm: Path) -> None:
    verdicts = load_guard(opencc_cm, dtype="bfloat16").classify(TEXTS)
    expected = reference_probs(opencc_cm, TEXTS, dtype=torch.bfloat16)
    for v, row in zip(verdicts, expected, strict=True):
        got = np.array([v.categories[c]["score"] for c in HARM_CATEGORIES])
        np.testing.assert_allclose(got, row[1:], atol=1e-6)
        assert v.variant == "lora-bf16"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "variant"), [({"avx2"}, "lora-fp32"), ({"amx_bf16"}, "lora-bf16")]
)
def test_auto_follows_the_cpu(opencc_cm: Path, monkeypatch, flags, variant) -> None:
    _cpu(monkeypatch, flags)
    guard = load_guard(opencc_cm)
    assert guard.dtype == ("bfloat16" if variant.endswith("bf16") else "float32")
    assert guard.classify(["x"])[0].variant == variant


@pytest.mark.slow
def test_cli_dtype_in_every_verdict_and_bad_values_exit_2(runner, opencc_cm: Path, tiny_model):
    ok = invoke(runner, ["classify", "-m", str(opencc_cm), "--dtype", "float32", "-q", "a", "b"])
    assert ok.exit_code in (0, 1), ok.stderr
    rows = [json.loads(line) for line in ok.stdout.splitlines()]
    assert [r["variant"] for r in rows] == ["lora-fp32", "lora-fp32"]
    bad = invoke(runner, ["classify", "-m", str(opencc_cm), "--dtype", "float64", "a"])
    assert bad.exit_code == 2 and bad.stdout == ""
    assert "Unknown --dtype 'float64'" in bad.stderr
    assert "auto, float32, bfloat16" in bad.stderr
    other = invoke(runner, ["classify", "-m", str(tiny_model), "--dtype", "float32", "a"])
    assert other.exit_code == 2
    assert "dtype (--dtype) does not apply to the seqcls family" in other.stderr


@pytest.mark.parametrize("command", ["classify", "sweep", "bench", "serve"])
def test_dtype_is_in_the_help_of_every_command_that_runs_opencc_on_torch(runner, command):
    result = invoke(runner, [command, "--help"])
    assert result.exit_code == 0
    assert "--dtype" in result.stdout and "float32" in result.stdout


def test_bench_passes_dtype_to_torch_paths_only():
    from guardcli.jobs.bench.runner import load_options

    assert load_options("lora", "float32") == {"variant": "lora", "dtype": "float32"}
    assert load_options("torch", "bfloat16") == {
        "variant": "auto",
        "backend": "torch",
        "dtype": "bfloat16",
    }
    assert load_options("fp32", "float32") == {"variant": "fp32"}
    assert load_options("lora") == {"variant": "lora"}


# ---------------------------------------------------------------------------- qwen3guard-gen torch


@pytest.mark.slow
def test_qwen3guard_torch_runs_and_names_the_dtype_chosen(runner):
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    model = cached_tiny_qwen3guard()
    for dtype, short in (("bfloat16", "bf16"), ("float32", "fp32")):
        guard = load_guard(model, backend="torch", dtype=dtype, generate=False)
        assert guard.lm.model.dtype == getattr(torch, dtype)
        assert guard.classify(["a lighthouse"])[0].variant == f"torch-{short}"
    onnx = invoke(runner, ["classify", "-m", str(model), "--dtype", "bfloat16", "-q", "hi"])
    assert onnx.exit_code == 2
    assert "--dtype applies to the torch backend, not to onnxruntime" in onnx.stderr


def test_pipeline_rejects_dtype_rather_than_ignoring_it(runner, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("stages:\n  - {name: a, model: csam-guard, role: screen}\n")
    result = invoke(runner, ["classify", "--pipeline", str(path), "--dtype", "float32", "hi"])
    assert result.exit_code == 2
    assert "--pipeline cannot be combined with --dtype" in result.stderr
