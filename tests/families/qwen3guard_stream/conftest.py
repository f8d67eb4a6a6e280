"""One tiny Qwen3Guard-Stream per test session (trained on a marker word; FP32 and INT8 ONNX),
built once into the test-model store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import model_store


@pytest.fixture(scope="session")
def stream_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from guardcli.families.qwen3guard_stream.export import quantize_folder
    from guardcli.families.qwen3guard_stream.synth import synth_qwen3guard_stream

    def build(out: Path) -> Path:
        synth_qwen3guard_stream(out, size="tiny")
        quantize_folder(out)
        return out

    recipe = "synth_qwen3guard_stream(size='tiny') + quantize_folder"
    dest = tmp_path_factory.mktemp("models") / "qwen3guard-stream-tiny"
    return model_store.cached_build(
        "qwen3guard-stream-tiny",
        "guardcli.families.qwen3guard_stream.synth",
        recipe,
        build,
        dest,
    )


@pytest.fixture(scope="session")
def stream_tokenizer(stream_model: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(stream_model / "tokenizer.json"))


@pytest.fixture(scope="session")
def stream_reference(stream_model: Path):
    from guardcli.families.qwen3guard_stream.reference import load_reference

    return load_reference(stream_model)
