"""Operations per token read from the ONNX graph, against a hand count from the model's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.runtime.graph_ops import graph_ops

# Slow as a whole (counts ops over the exported graphs: ~1.3 s); `make test` runs it.
pytestmark = pytest.mark.slow


def hand_count(config: dict, head: tuple[int, ...], seq: int) -> float:
    """Qwen3 trunk from config.json: q, k, v, o, gate, up, down per layer, attention scores and
    their product with V over `seq` tokens, and the classifier head once per sequence."""
    h, i, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    heads, kv, d = config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]
    weights = h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * i
    attention = 2 * heads * d * seq  # QK^T and AV, per token
    head_ops = sum(a * b for a, b in zip(head, head[1:], strict=False))
    return layers * 2 * (weights + attention) + 2 * head_ops / seq


def test_ops_per_token_equals_a_hand_count(tiny_model: Path):
    config = json.loads((tiny_model / "config.json").read_text())
    ops = graph_ops(tiny_model / "onnx" / "model.onnx")
    h = config["hidden_size"]
    for seq in (1, 48, 300):  # fitted at 8, 16, 32 tokens: exact at any length
        expected = hand_count(config, (h, h // 2, 2), seq)  # head: Linear(h, h/2), (h/2, 2)
        assert ops.per_token(seq) == pytest.approx(expected, rel=1e-9)
    assert ops.unresolved == 0
    layers = config["num_hidden_layers"]
    assert ops.weights[(h, config["intermediate_size"])] == 2 * layers  # gate and up
    assert ops.weights[(config["intermediate_size"], h)] == layers  # down
