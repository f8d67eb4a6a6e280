"""The tiny trained Llama Guard (LlamaForCausalLM, stand-in tokenizer), built once per builder
version into the test-model store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ... import model_store


@pytest.fixture(scope="session")
def lg_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from guardcli.families.llama_guard.synth import synth_llama_guard

    return model_store.cached_build(
        "llama-guard-tiny",
        "guardcli.families.llama_guard.synth",
        "synth_llama_guard(size='tiny', seed=0)",
        lambda out: synth_llama_guard(out, size="tiny", seed=0),
        tmp_path_factory.mktemp("models") / "llama-guard-tiny",
    )
