"""The builder writes Qwen3Guard-Stream's real config keys, weight names and label maps, and its
checkpoint loads into the reference with the shapes the spec gives (spec §2-§4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.core.errors import GuardError
from guardcli.families.qwen3guard_stream.labels import label_maps
from guardcli.families.qwen3guard_stream.synth import model_config

# Spec §4: the two head stacks, by checkpoint name.
HEAD_WEIGHTS = {
    "risk_level_category_pre.weight": ("inner", "hidden"),
    "risk_level_category_layernorm.weight": ("inner",),
    "risk_level_head.weight": (3, "inner"),
    "category_head.weight": (8, "inner"),
    "query_risk_level_category_pre.weight": ("inner", "hidden"),
    "query_risk_level_category_layernorm.weight": ("inner",),
    "query_risk_level_head.weight": (3, "inner"),
    "query_category_head.weight": (9, "inner"),
}


def test_full_config_has_the_06b_keys() -> None:
    config = model_config("full")
    expected = {
        "hidden_size": 1024,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "intermediate_size": 3072,
        "vocab_size": 151936,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": True,
        "guard_inner_size": 512,
        "num_risk_level": 3,
        "num_category": 8,
        "num_query_risk_level": 3,
        "num_query_category": 9,
        "architectures": ["Qwen3ForGuardModel"],
        "model_type": "qwen3",
    }
    assert {k: config[k] for k in expected} == expected


def test_unknown_size_is_refused() -> None:
    with pytest.raises(GuardError, match="Unknown size 'huge'"):
        model_config("huge")


def test_label_maps_are_string_keyed_in_json_and_int_after_loading(stream_model: Path) -> None:
    raw = json.loads((stream_model / "config.json").read_text())
    assert raw["response_risk_level_map"] == {"0": "Safe", "1": "Unsafe", "2": "Controversial"}
    maps = label_maps(raw)
    assert maps["query_risk_level_map"] == {0: "Safe", 1: "Unsafe", 2: "Controversial"}
    assert maps["response_risk_level_map"] == maps["query_risk_level_map"]
    assert len(maps["response_category_map"]) == raw["num_category"] == 8
    assert len(maps["query_category_map"]) == raw["num_query_category"] == 9
    assert maps["query_category_map"][8] == "Jailbreak"
    assert maps["response_category_map"][0] == "Violent"
    assert "None" not in maps["response_category_map"].values()


def test_checkpoint_names_and_shapes(stream_model: Path) -> None:
    from safetensors import safe_open

    config = json.loads((stream_model / "config.json").read_text())
    dims = {"inner": config["guard_inner_size"], "hidden": config["hidden_size"]}
    with safe_open(str(stream_model / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        shapes = {name: tuple(f.get_slice(name).get_shape()) for name in HEAD_WEIGHTS}
    for name, shape in HEAD_WEIGHTS.items():
        assert shapes[name] == tuple(dims.get(d, d) for d in shape), name  # type: ignore[arg-type]
    layers = config["num_hidden_layers"]
    assert f"model.layers.{layers - 1}.self_attn.q_norm.weight" in names
    assert f"model.layers.{layers - 1}.self_attn.k_norm.weight" in names
    assert "model.embed_tokens.weight" in names and "model.norm.weight" in names
    assert not any("bias" in n for n in names)  # no QKV bias, no head bias
    assert "lm_head.weight" not in names  # tied


@pytest.mark.slow
def test_checkpoint_loads_into_the_reference(stream_model: Path, stream_reference) -> None:
    import torch

    ids = torch.tensor([[151644, 872, 198, 9707, 151645]])
    out = stream_reference(input_ids=ids)
    assert out.risk_level_logits.shape == (1, 5, 3)
    assert out.category_logits.shape == (1, 5, 8)
    assert out.query_risk_level_logits.shape == (1, 5, 3)
    assert out.query_category_logits.shape == (1, 5, 9)
    # The heads are pointwise: the response logits are the stack applied to the trunk's states.
    h = stream_reference.model(input_ids=ids).last_hidden_state
    pre = torch.nn.functional.linear(h, stream_reference.risk_level_category_pre.weight)
    eps = stream_reference.config.rms_norm_eps
    x = pre * torch.rsqrt(pre.pow(2).mean(-1, keepdim=True) + eps)
    x = x * stream_reference.risk_level_category_layernorm.weight
    expected = torch.nn.functional.linear(x, stream_reference.risk_level_head.weight)
    torch.testing.assert_close(out.risk_level_logits, expected, atol=1e-5, rtol=1e-5)


def test_a_folder_of_another_family_is_refused(tmp_path: Path) -> None:
    from guardcli.families.qwen3guard_stream.reference import read_config

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen3ForCausalLM"]}))
    with pytest.raises(GuardError, match="is not a Qwen3Guard-Stream model"):
        read_config(tmp_path)
