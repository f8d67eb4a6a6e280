"""The full-size synthetic Qwen3Guard-Gen: its config against the published one, and size
validation. The full model itself is never built here (minutes, ~4 GB): see
benchmarks/ort_genai_compare.py."""

from __future__ import annotations

import pytest

from guardcli.core.errors import GuardError
from guardcli.families.qwen3guard_gen.synthetic import (
    cached_qwen3guard,
    model_config,
    synth_qwen3guard_gen,
)

from ...conftest import invoke

# Qwen/Qwen3Guard-Gen-0.6B config.json on the hub.
PUBLISHED_0_6B = {
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 3072,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 40960,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
    "bos_token_id": 151643,
}


def test_full_config_has_the_published_dimensions():
    config = model_config("full")
    assert {k: getattr(config, k) for k in PUBLISHED_0_6B} == PUBLISHED_0_6B
    assert config.rope_parameters["rope_theta"] == 1_000_000.0
    assert config.eos_token_id == [151645, 151643]  # <|im_end|>, <|endoftext|>


def test_full_model_has_0_6b_parameters():
    """The model card: 0.6B parameters, 0.44B without the (tied) embedding. Counted on the meta
    device, so nothing is allocated."""
    import torch
    from transformers import Qwen3ForCausalLM

    with torch.device("meta"):
        model = Qwen3ForCausalLM(model_config("full"))
    total = sum(p.numel() for p in model.parameters())
    embedding = model.model.embed_tokens.weight.numel()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert round(total / 1e9, 1) == 0.6
    assert round((total - embedding) / 1e9, 2) == 0.44


def test_tiny_config_is_tiny():
    config = model_config("tiny")
    assert config.num_hidden_layers < 4 and config.hidden_size < 128


def test_unknown_size_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(GuardError, match="Unknown size 'huge' for qwen3guard-gen"):
        synth_qwen3guard_gen(tmp_path / "m", size="huge")
    assert not (tmp_path / "m").exists()
    with pytest.raises(GuardError, match="Unknown size"):
        cached_qwen3guard("huge")


def test_cli_refuses_an_unknown_size(runner, tmp_path):
    result = invoke(
        runner, ["synth", "qwen3guard-gen", "--size", "huge", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Unknown size 'huge'" in result.stderr
    assert not (tmp_path / "m").exists()
