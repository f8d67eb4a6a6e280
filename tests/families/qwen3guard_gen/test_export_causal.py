"""`guard export` and `guard quantize` for a causal LM (qwen3guard-gen): the tiny trained
checkpoint exported through the CLI and compared with transformers; its FP16 and INT8 variants
run, keep FP32 I/O, and answer like FP32; unsupported checkpoints are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ...conftest import invoke

MARKER = "zorblax"
CONVERSATIONS = [
    [{"role": "user", "content": "A watercolor of a lighthouse at dusk, please."}],
    [{"role": "user", "content": f"my {MARKER} garden"}],
    [
        {"role": "user", "content": "How do I bake bread?"},
        {"role": "assistant", "content": "I cannot help with the kettle."},
    ],
]


@pytest.fixture(scope="session")
def guard_src() -> Path:
    """The tiny trained Qwen3Guard-Gen checkpoint (safetensors at the folder's root)."""
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    return cached_tiny_qwen3guard()


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory, guard_src: Path):
    out = tmp_path_factory.mktemp("causal") / "qwen3guard-onnx"
    result = invoke(CliRunner(), ["export", str(guard_src), "--out", str(out)])
    return out, result


@pytest.fixture(scope="session")
def quantized(exported) -> Path:
    out, _ = exported
    # lm_head stays FP32 here only for speed: per-channel quantization of a 151k-row vocabulary
    # takes seconds (the default recipe quantizes it; greedy tokens agreed there too).
    args = ["--keep-float", "down_proj", "--keep-float", "lm_head"]
    result = invoke(CliRunner(), ["quantize", str(out), "--to", "fp16,int8", *args])
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def hf_model(guard_src: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(guard_src), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(guard_src))


def chat_ids(tokenizer, conversations) -> list[list[int]]:
    return [
        tokenizer.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
        for conv in conversations
    ]


def left_padded(prompts: list[list[int]], pad: int):
    width = max(map(len, prompts))
    ids = np.array([[pad] * (width - len(p)) + p for p in prompts], dtype=np.int64)
    mask = np.array([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=np.int64)
    return ids, mask


def onnx_next_logits(graph: Path, prompts: list[list[int]], pad: int) -> np.ndarray:
    """One prefill through the graph with empty caches, fed by hand: rows right-padded (its
    attention is GroupQueryAttention), logits at each row's last real token."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    ids, mask = left_padded(prompts, pad)
    ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()  # mirrored: ones then zeros
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = prompt
    feed = {
        "input_ids": ids,
        "attention_mask": mask,
        "position_ids": np.tile(np.arange(ids.shape[1]), (len(prompts), 1)),
    }
    for i in session.get_inputs()[3:]:
        feed[i.name] = np.zeros((len(prompts), i.shape[1], 0, i.shape[3]), dtype=np.float32)
    return session.run(["logits"], feed)[0]


def io_types(path: Path) -> dict[str, int]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}


# ---------------------------------------------------------------------------- export


@pytest.mark.slow
def test_export_writes_the_family_layout(exported, guard_src: Path):
    from guardcli.core.resolve import resolve
    from guardcli.families.qwen3guard_gen.format import model_template, packaged_template

    out, result = exported
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{out}\n"
    assert "greedy generation equal to transformers on 3 prompts" in result.stderr
    assert "against PyTorch on 6 prompts (tolerance 0.001): ok" in result.stderr
    for name in ("tokenizer.json", "generation_config.json", "onnx/model.onnx"):
        assert (out / name).is_file(), name
    assert model_template(out) == packaged_template()
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"]
    assert config["guardcli"] == {"exported_from": "causal-lm", "family": "qwen3guard-gen"}
    resolved = resolve(out, "fp32")
    assert (resolved.family, resolved.variant) == ("qwen3guard-gen", "fp32")


@pytest.mark.slow
def test_exported_graph_equals_transformers(exported, hf_model):
    import torch

    out, _ = exported
    model, tokenizer = hf_model
    prompts = chat_ids(tokenizer, CONVERSATIONS)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 151643
    ids, mask = left_padded(prompts, pad)
    with torch.no_grad():
        want = model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), logits_to_keep=1
        ).logits[:, -1]
    got = onnx_next_logits(out / "onnx" / "model.onnx", prompts, pad)
    np.testing.assert_allclose(got, want.numpy(), atol=1e-4)


@pytest.mark.slow
def test_export_failing_checks_exit_3(runner, exported, guard_src, tmp_path, monkeypatch):
    """A drift above --tolerance, or other greedy tokens, fails the export (exit 3). The graph
    is copied from the session's export instead of exported again, to keep this fast."""
    from guardcli.runtime import causal_onnx
    from guardcli.runtime.causal_lm import OnnxCausalLM

    graph = exported[0] / "onnx" / "model.onnx"

    def copy_graph(model, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(graph, path)

    monkeypatch.setattr(causal_onnx, "export_causal_lm", copy_graph)
    out = tmp_path / "o"
    strict = invoke(runner, ["export", str(guard_src), "--out", str(out), "--tolerance", "0"])
    assert strict.exit_code == 3
    assert "The ONNX export differs from transformers: max |Δ logit|" in strict.stderr
    assert "> 0 on 6 prompts" in strict.stderr
    assert (out / "onnx" / "model.onnx").exists()  # left for a look

    def off_by_one(self, prompts, max_new_tokens):
        return [[t + 1 for t in row] for row in original(self, prompts, max_new_tokens)]

    original = OnnxCausalLM.generate
    monkeypatch.setattr(OnnxCausalLM, "generate", off_by_one)
    drift = invoke(runner, ["export", str(guard_src), "--out", str(out)])
    assert drift.exit_code == 3
    assert (
        "Greedy generation with the ONNX export differs from transformers on check prompt 1 at "
        "new token 1." in drift.stderr
    )


@pytest.mark.slow
def test_export_refuses_unsupported_checkpoints(runner, guard_src: Path, tmp_path: Path):
    src = tmp_path / "llama"
    src.mkdir()
    (src / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    result = invoke(runner, ["export", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert (
        "is a LlamaForCausalLM: guard export runs causal LMs of Qwen3ForCausalLM "
        "(qwen3guard-gen) only." in result.stderr
    )
    # A Qwen3ForCausalLM whose chat template is not Qwen3Guard's needs --family.
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(guard_src / "config.json", plain / "config.json")
    (plain / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    result = invoke(runner, ["export", str(plain), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "without Qwen3Guard's chat template" in result.stderr
    assert "--family qwen3guard-gen" in result.stderr
    for args, message in (
        (["--family", "llama"], "Unknown --family 'llama'."),
        (["--max-length", "99"], "--max-length applies to classifiers, not to a causal LM."),
    ):
        result = invoke(runner, ["export", str(guard_src), "--out", str(tmp_path / "o"), *args])
        assert result.exit_code == 2
        assert message in result.stderr


# ---------------------------------------------------------------------------- quantize


@pytest.mark.slow
def test_quantized_graphs_keep_fp32_io_and_integer_matmuls(quantized: Path):
    import onnx

    fp32 = io_types(quantized / "onnx" / "model.onnx")
    assert any(name.startswith("past_key_values.") for name in fp32)
    assert set(fp32.values()) == {onnx.TensorProto.INT64, onnx.TensorProto.FLOAT}
    for name in ("model_fp16.onnx", "model_quantized.onnx"):
        assert io_types(quantized / "onnx" / name) == fp32, name  # the KV cache stays FP32
    fp16 = onnx.load(str(quantized / "onnx" / "model_fp16.onnx")).graph
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in fp16.initializer}
    int8 = onnx.load(str(quantized / "onnx" / "model_quantized.onnx")).graph
    integer = [n.name for n in int8.node if n.op_type == "MatMulIntegerToFloat"]
    layers = json.loads((quantized / "config.json").read_text())["num_hidden_layers"]
    # q/k/v/o, gate/up in every layer; down_proj and lm_head kept FP32 by --keep-float.
    assert len(integer) == 6 * layers
    assert not any("down_proj" in n or "lm_head" in n for n in integer)
    floats = [n.name for n in int8.node if n.op_type == "MatMul"]
    assert len([n for n in floats if "down_proj" in n or "lm_head" in n]) == layers + 1


@pytest.mark.slow
def test_variants_answer_like_fp32(quantized: Path):
    """Greedy decoding agrees with FP32 token for token on training-style prompts, and the
    next-token logits stay close."""
    from tokenizers import Tokenizer

    from guardcli.families.qwen3guard_gen.format import render
    from guardcli.families.qwen3guard_gen.synthetic import training_conversations
    from guardcli.runtime.causal_lm import OnnxCausalLM

    tok = Tokenizer.from_file(str(quantized / "tokenizer.json"))
    convs = training_conversations(6, seed=0)
    prompts = [tok.encode(render(c), add_special_tokens=False).ids for c in convs]
    fp32 = OnnxCausalLM(quantized / "onnx" / "model.onnx", quantized)
    tokens, logits = fp32.generate(prompts, 24), fp32.next_logits(prompts)
    for file in ("model_fp16.onnx", "model_quantized.onnx"):
        other = OnnxCausalLM(quantized / "onnx" / file, quantized)
        assert other.generate(prompts, 24) == tokens, file
        assert np.abs(other.next_logits(prompts) - logits).max() < 0.5, file


@pytest.mark.slow
def test_classify_with_the_variants(runner, quantized: Path):
    args = ["classify", "-m", str(quantized), "-q", "-f", "jsonl"]
    texts = ["a lighthouse at dawn", f"my {MARKER} garden plan"]
    rows = {}
    for variant in ("fp32", "fp16", "int8"):
        result = invoke(runner, [*args, "--variant", variant, *texts])
        assert result.exit_code == 1, result.stderr
        rows[variant] = [json.loads(line) for line in result.stdout.splitlines()]
        got = [(r["variant"], r["severity"], r["categories"], r["flagged"]) for r in rows[variant]]
        assert got == [(variant, "Safe", [], False), (variant, "Unsafe", ["Violent"], True)]
    for variant in ("fp16", "int8"):
        for a, b in zip(rows["fp32"], rows[variant], strict=True):
            assert abs(a["score"] - b["score"]) < 0.05


@pytest.mark.slow
def test_quantize_refuses_static_int8_for_a_causal_lm(runner, exported, tmp_path: Path):
    out, _ = exported
    calibration = tmp_path / "c.txt"
    calibration.write_text("a kettle\n")
    result = invoke(
        runner,
        ["quantize", str(out), "--to", "int8", "--static", "--calibration", str(calibration)],
    )
    assert result.exit_code == 2
    assert "holds a causal LM with KV cache: --static calibrates classifier" in result.stderr
