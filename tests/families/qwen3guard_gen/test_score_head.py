"""Score mode's restricted head (runtime.score_head): a copy of a causal LM graph whose head
computes only the verdict tokens' logits gives the same logits as the full-vocabulary graph and
the same probabilities as transformers, in FP32 and per-row INT8, with and without the template
head's cached KV."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from guardcli.families.qwen3guard_gen import format as fmt

# Slow as a whole (score-head restriction against the full vocabulary on the tiny Qwen3Guard-Gen:
# ~2.5 s); `make test` runs it.
pytestmark = pytest.mark.slow

IDS = [21_000, 5, 151_000]  # far apart, unsorted: columns come back in the order asked


@pytest.fixture(scope="session")
def tiny_lm() -> Path:
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    return cached_tiny_qwen3guard()


@pytest.fixture(scope="session")
def int8_lm(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model quantized with every MatMul INT8, lm_head included (per-channel scales
    and zero points over the vocabulary: what the restricted head must slice along)."""
    import onnx

    from guardcli.runtime.onnx_recipes import to_int8_dynamic

    out = tmp_path_factory.mktemp("int8-lm")
    for name in ("config.json", "generation_config.json"):
        shutil.copy(tiny_lm / name, out / name)
    (out / "onnx").mkdir()
    graph = out / "onnx" / "model.onnx"
    to_int8_dynamic(tiny_lm / "onnx" / "model.onnx", graph, keep_float=())
    quantized = onnx.load(str(graph)).graph
    vocab = [t for t in quantized.initializer if t.dims and t.dims[-1] == 151_669]
    assert {t.data_type for t in vocab} >= {onnx.TensorProto.INT8}  # lm_head is INT8
    return out


def _prompts(model_dir: Path) -> tuple[list[list[int]], list[int]]:
    """Rendered prompts of different lengths (all share the template head) and that head."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    texts = ["a lighthouse at dusk", "x", "a much longer question about bread and rivers" * 3]
    ids = [
        tok.encode(fmt.render([{"role": "user", "content": t}]), add_special_tokens=False).ids
        for t in texts
    ]
    heads = fmt.template_heads(lambda t: tok.encode(t, add_special_tokens=False).ids)
    return ids, heads[0]


def test_restricted_head_equals_the_full_vocabulary(tiny_lm: Path):
    import onnx

    from guardcli.runtime.causal_lm import OnnxCausalLM
    from guardcli.runtime.score_head import score_graph

    prompts, head = _prompts(tiny_lm)
    lm = OnnxCausalLM(tiny_lm / "onnx" / "model.onnx", tiny_lm, prefixes=[head])
    got = lm.score_logits(prompts, IDS)
    assert "session" not in vars(lm)  # score mode alone never loads the full vocabulary
    assert got.shape == (3, len(IDS))
    np.testing.assert_allclose(got, lm.next_logits(prompts)[:, IDS], atol=1e-5, rtol=0)
    np.testing.assert_allclose(lm.score_logits(prompts[1:2], IDS), got[1:2], atol=1e-5)
    # The copy holds no vocabulary-wide head: its output and head weights have len(IDS) columns.
    path = score_graph(tiny_lm / "onnx" / "model.onnx", IDS)  # the copy made above
    assert path is not None and path.parent != tiny_lm / "onnx"
    graph = onnx.load(str(path)).graph
    assert graph.output[0].type.tensor_type.shape.dim[-1].dim_value == len(IDS)
    assert not [t.name for t in graph.initializer if t.dims and t.dims[-1] == 151_669]


@pytest.mark.slow
def test_restricted_head_probabilities_equal_transformers(tiny_lm: Path):
    import torch
    from transformers import AutoModelForCausalLM

    from guardcli.runtime.causal_lm import OnnxCausalLM

    prompts, _ = _prompts(tiny_lm)
    got = OnnxCausalLM(tiny_lm / "onnx" / "model.onnx", tiny_lm).score_logits(prompts, IDS)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_lm), dtype=torch.float32).eval()
    for prompt, row in zip(prompts, got, strict=True):
        with torch.no_grad():
            ref = model(torch.tensor([prompt])).logits[0, -1, IDS].double()
        want = torch.softmax(ref, 0).numpy()
        have = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
        np.testing.assert_allclose(have, want, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_restricted_int8_head_is_exact_and_batch_invariant(int8_lm: Path, tiny_lm: Path):
    from guardcli.runtime.causal_lm import OnnxCausalLM

    prompts, head = _prompts(tiny_lm)
    shutil.copy(tiny_lm / "tokenizer.json", int8_lm / "tokenizer.json")
    lm = OnnxCausalLM(int8_lm / "onnx" / "model.onnx", int8_lm, prefixes=[head])
    got = lm.score_logits(prompts, IDS)
    assert lm.score_session(IDS) is not None
    np.testing.assert_allclose(got, lm.next_logits(prompts)[:, IDS], atol=1e-5, rtol=0)
    for row, prompt in enumerate(prompts):
        np.testing.assert_allclose(lm.score_logits([prompt], IDS)[0], got[row], atol=1e-5)


def test_a_head_that_cannot_be_restricted_falls_back_to_the_full_logits(tiny_lm, tmp_path):
    """A graph whose logits have no static vocabulary size is left alone; score_logits then
    reads the full logits."""
    import onnx

    from guardcli.runtime.causal_lm import OnnxCausalLM
    from guardcli.runtime.score_head import restrict_head

    model = onnx.load(str(tiny_lm / "onnx" / "model.onnx"))
    model.graph.output[0].type.tensor_type.shape.dim[-1].dim_param = "vocab"
    before = model.SerializeToString()
    assert restrict_head(model, IDS, tmp_path) == 0
    assert model.SerializeToString() == before
    (tmp_path / "onnx").mkdir()
    onnx.save(model, str(tmp_path / "onnx" / "model.onnx"))
    for name in ("config.json", "generation_config.json"):
        shutil.copy(tiny_lm / name, tmp_path / name)
    lm = OnnxCausalLM(tmp_path / "onnx" / "model.onnx", tmp_path)
    prompts = [[9707, 1879, 11], [100]]
    assert lm.score_session(IDS) is None
    np.testing.assert_allclose(lm.score_logits(prompts, IDS), lm.next_logits(prompts)[:, IDS])
