"""The synthetic model's ONNX variants against the PyTorch module they were exported from, and
the card's FP16/INT8 recipes as they appear in the graphs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from guardcli.core.batching import pad
from guardcli.core.tokenize import TextTokenizer
from guardcli.families.seqcls.synthetic import build_csam_guard_module

from ...conftest import SAMPLES

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def batch(tiny_model: Path) -> tuple[np.ndarray, np.ndarray]:
    texts = [json.loads(line)["text"] for line in (SAMPLES / "prompts.jsonl").open()][:12]
    tok = TextTokenizer(tiny_model, 384)
    return pad([e.ids for e in tok.encode(texts)], tok.pad_id)


def run_onnx(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def test_fp32_onnx_equals_pytorch(tiny_model: Path, batch) -> None:
    ids, mask = batch
    module = build_csam_guard_module("tiny", seed=0)
    with torch.no_grad():
        expected = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    got = run_onnx(tiny_model / "onnx" / "model.onnx", ids, mask)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_module_matches_reference_last_token_pooling(batch) -> None:
    """Our 4-D-mask export wrapper equals the Qwen3-Embedding reference: transformers' own
    attention mask handling, then pooling at position attention_mask.sum()-1."""
    ids, mask = (torch.from_numpy(a) for a in batch)
    module = build_csam_guard_module("tiny", seed=0)
    with torch.no_grad():
        hidden = module.model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = hidden[torch.arange(ids.shape[0]), mask.sum(1) - 1]
        reference = module.head(pooled)
        ours = module(ids, mask)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_variants_agree_with_fp32(tiny_model: Path, batch) -> None:
    ids, mask = batch
    fp32 = run_onnx(tiny_model / "onnx" / "model.onnx", ids, mask)
    fp16 = run_onnx(tiny_model / "onnx" / "model_fp16.onnx", ids, mask)
    int8 = run_onnx(tiny_model / "onnx" / "model_quantized.onnx", ids, mask)
    assert fp16.dtype == np.float32  # keep_io_types
    assert np.abs(fp16 - fp32).max() < 0.05
    assert np.abs(int8 - fp32).max() < 0.5


def test_fp16_keeps_norms_in_fp32(tiny_model: Path) -> None:
    """RMSNorm arithmetic runs in FP32, every MatMul in FP16 (shape inference gives the types)."""
    model = onnx.shape_inference.infer_shapes(
        onnx.load(str(tiny_model / "onnx" / "model_fp16.onnx"))
    )
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    norm_ops = [
        n
        for n in model.graph.node
        if n.op_type in ("Pow", "ReduceMean", "Sqrt") and "norm" in n.name
    ]
    layers = build_csam_guard_module("tiny").model.config.num_hidden_layers
    # input/post-attention layernorm + q_norm + k_norm per layer, and the final norm.
    assert len(norm_ops) == 3 * (4 * layers + 1)
    assert {types[n.output[0]] for n in norm_ops} == {onnx.TensorProto.FLOAT}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert {types[n.output[0]] for n in matmuls} == {onnx.TensorProto.FLOAT16}


def test_int8_keeps_down_proj_in_float(tiny_model: Path) -> None:
    graph = onnx.load(str(tiny_model / "onnx" / "model_quantized.onnx")).graph
    weights = {t.name for t in graph.initializer}
    # MatMuls against a weight (attention's activation x activation MatMuls have none).
    float_matmuls = [
        n.name for n in graph.node if n.op_type == "MatMul" and any(i in weights for i in n.input)
    ]
    assert float_matmuls and all("down_proj" in n for n in float_matmuls)
    layers = build_csam_guard_module("tiny").model.config.num_hidden_layers
    assert len(float_matmuls) == layers
    assert any(n.op_type == "MatMulIntegerToFloat" for n in graph.node)
