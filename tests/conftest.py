"""Shared fixtures: one tiny random-weight CSAM-Guard model per test session, real runtimes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


@pytest.fixture(scope="session", autouse=True)
def _isolated_hub(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never touch the user's Hugging Face cache or the network."""
    hf_home = tmp_path_factory.mktemp("hf_home")
    os.environ["HF_HOME"] = str(hf_home)
    os.environ["HF_HUB_CACHE"] = str(hf_home / "hub")
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.pop("HF_TOKEN", None)
    os.environ["COLUMNS"] = "120"
    # `--variant auto` follows a stored `probe-cpu --verify` measurement: never the user's.
    os.environ["GUARD_PROBE_RESULT"] = str(hf_home / "probe-cpu.json")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CSAM-Guard of the real architecture: fp32, fp16 and int8 ONNX, real tokenizer."""
    from guardcli.synthetic import synth_csam_guard

    return synth_csam_guard(tmp_path_factory.mktemp("models") / "csam-guard-tiny", size="tiny")


@pytest.fixture(scope="session")
def nan_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CSAM-Guard whose head outputs NaN: a broken model, which must never be judged safe."""
    import torch

    import guardcli.synthetic as synthetic

    build = synthetic.build_csam_guard_module

    def broken(size: str = "tiny", seed: int = 0):
        module = build(size, seed)
        with torch.no_grad():
            module.head[2].bias.fill_(float("nan"))
        return module

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(synthetic, "build_csam_guard_module", broken)
        return synthetic.synth_csam_guard(
            tmp_path_factory.mktemp("models") / "csam-guard-nan", size="tiny", variants=("fp32",)
        )


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, args: list[str], input: str | bytes | None = None):
    """Run `guard ARGS` in-process; stdout and stderr come back separately."""
    from guardcli.cli import app

    return runner.invoke(app, args, input=input, catch_exceptions=False)


@pytest.fixture(scope="session")
def opencc_cm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenCC content-moderation checkpoint (LoRA + head + thresholds) on a tiny Qwen3.5."""
    from guardcli.synthetic_opencc import synth_opencc

    return synth_opencc(tmp_path_factory.mktemp("models") / "opencc-cm", "opencc-cm")


@pytest.fixture(scope="session")
def opencc_jb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenCC jailbreak detector (threshold.json sidecar)."""
    from guardcli.synthetic_opencc import synth_opencc

    return synth_opencc(tmp_path_factory.mktemp("models") / "opencc-jb", "opencc-jb", seed=1)


@pytest.fixture(scope="session")
def intent_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny dialogue-intent classifier: safetensors, task description, ONNX fp32/fp16/int8."""
    from guardcli.synthetic_dialogue import synth_intent_ctx

    return synth_intent_ctx(tmp_path_factory.mktemp("models") / "intent-ctx")
