"""The causal LM graph with GroupQueryAttention (runtime.causal_onnx, runtime.kv_buffers):
logits and greedy tokens equal transformers for Qwen3 (q/k RMSNorm) and Llama (none), through
the prefill and decoding steps on the in-place cache; head-KV reuse and score mode equal the
whole-prompt path; a row's numbers do not depend on its neighbours; per-row INT8 quantizes
every weight MatMul, lm_head included; graphs exported before (eager attention) still run.

Tiny random-weight models built here (2 layers, 4 query heads over 2 KV heads, a 512-token
vocabulary): a few seconds to build and export.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

# Slow as a whole (exports a GroupQueryAttention graph per architecture and checks it against
# transformers: ~7 s); `make test` runs it.
pytestmark = pytest.mark.slow

torch = pytest.importorskip("torch")

VOCAB, EOS = 512, 2
PROMPTS = [[5, 17, 99, 3, 250, 8, 8, 41], [7], [300, 12, 12, 480, 66]]
HEAD = list(range(20, 40))  # a shared head of 20 tokens (MIN_PREFIX is 16)
TAILS = [[5, 9, 11], [400], [6, 7, 8, 9, 10, 11, 12]]


def _build(kind: str, out: Path):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from guardcli.runtime.causal_onnx import export_causal_lm

    dims = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        eos_token_id=EOS,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(7)
    if kind == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**dims, attn_implementation="eager"))
    else:
        model = LlamaForCausalLM(LlamaConfig(**dims, attn_implementation="eager"))
    # Larger weights than the init's: logits spread out, so greedy choices are clear-cut.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0 if p.dim() > 1 else 1.0)
    model.eval().save_pretrained(str(out))
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": EOS}))
    export_causal_lm(model, out / "onnx" / "model.onnx")
    export_causal_lm(model, out / "eager" / "model.onnx", attention="eager")
    return model


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def lm_dir(request, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp(request.param)
    return _build(request.param, out), out


def _reference(model, seq: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([seq])).logits[0, -1].numpy()


def _lm(out: Path, graph: str = "onnx/model.onnx", **kwargs):
    from guardcli.runtime.causal_lm import OnnxCausalLM

    return OnnxCausalLM(out / graph, out, threads=1, **kwargs)


@pytest.mark.parametrize("batch", [PROMPTS[:1], PROMPTS])
def test_prefill_and_decoding_steps_equal_transformers(lm_dir, batch):
    model, out = lm_dir
    lm = _lm(out)
    assert lm.in_place
    logits, cache = lm._prefill_in_place(batch, lm.session, extra=4)
    seqs = [list(p) for p in batch]
    for step in range(4):
        for row, seq in enumerate(seqs):
            np.testing.assert_allclose(logits[row], _reference(model, seq), atol=1e-4, rtol=0)
        if step == 3:
            break
        nxt = np.array([(31 * step + 7 * row) % VOCAB for row in range(len(seqs))])
        for row, seq in enumerate(seqs):
            seq.append(int(nxt[row]))
        logits = cache.run(nxt[:, None], np.ones(len(seqs), dtype=np.int64))
    assert list(cache.lengths) == [len(p) + 3 for p in batch]


def test_generate_equals_transformers_greedy(lm_dir):
    from guardcli.families.qwen3guard_gen.export import reference_generate

    model, out = lm_dir
    want = reference_generate(torch, model, PROMPTS, EOS, [EOS], 10)
    assert _lm(out).generate(PROMPTS, 10) == want
    assert [_lm(out).generate([p], 10)[0] for p in PROMPTS] == want


def test_head_reuse_and_score_mode_equal_the_whole_prompt(lm_dir):
    _, out = lm_dir
    prompts = [HEAD + t for t in TAILS]
    ids = [EOS, 300, 7]
    plain, reused = _lm(out), _lm(out, prefixes=[HEAD])
    assert reused.shared_prefix(prompts) == tuple(HEAD)
    whole = plain.next_logits(prompts)
    np.testing.assert_allclose(reused.next_logits(prompts), whole, atol=1e-5, rtol=0)
    np.testing.assert_allclose(reused.score_logits(prompts, ids), whole[:, ids], atol=1e-5)
    np.testing.assert_allclose(plain.score_logits(prompts, ids), whole[:, ids], atol=1e-5)
    assert reused.score_session(ids) is not None  # the restricted head ran
    assert reused.generate(prompts, 8) == plain.generate(prompts, 8)
    assert set(reused.prefix_kv) == {tuple(HEAD)}


def _decode_logits(lm, prompts, steps: int = 3) -> np.ndarray:
    """[steps + 1, batch, vocab]: the prefill's logits, then after each fixed token."""
    logits, cache = lm._prefill_in_place(prompts, lm.session, extra=steps)
    out = [logits]
    for step in range(steps):
        nxt = np.full(len(prompts), 11 + step, dtype=np.int64)
        out.append(cache.run(nxt[:, None], np.ones(len(prompts), dtype=np.int64)))
    return np.stack(out)


def test_a_rows_numbers_do_not_depend_on_its_neighbours(lm_dir):
    _, out = lm_dir
    lm = _lm(out)
    loud = [[VOCAB - 1] * 40]  # a long row of one token beside short ones
    together = _decode_logits(lm, [*PROMPTS, *loud])
    for row, prompt in enumerate(PROMPTS):
        alone = _decode_logits(lm, [prompt])[:, 0]
        np.testing.assert_allclose(together[:, row], alone, atol=1e-5, rtol=0)


def test_per_row_int8_quantizes_every_weight_matmul_and_stays_batch_invariant(lm_dir, tmp_path):
    import onnx

    from guardcli.runtime.onnx_recipes import to_int8_dynamic

    model, out = lm_dir
    for name in ("config.json", "generation_config.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    graph = tmp_path / "onnx" / "model_quantized.onnx"
    graph.parent.mkdir()
    to_int8_dynamic(out / "onnx" / "model.onnx", graph, keep_float=())
    proto = onnx.load(str(graph))
    weights = {t.name for t in proto.graph.initializer}
    float_weight = [
        n.name for n in proto.graph.node if n.op_type == "MatMul" and weights & set(n.input)
    ]
    assert float_weight == []
    assert any("lm_head" in n.name for n in proto.graph.node if "Integer" in n.op_type)
    assert [n.op_type for n in proto.graph.node].count("GroupQueryAttention") == 2
    lm = _lm(tmp_path, "onnx/model_quantized.onnx")
    assert lm.in_place and not lm.rows_alone
    together = _decode_logits(lm, PROMPTS)
    for row, prompt in enumerate(PROMPTS):
        np.testing.assert_allclose(
            together[:, row], _decode_logits(lm, [prompt])[:, 0], atol=1e-5, rtol=0
        )
    # Close to FP32: INT8 weights and activations, not a different model.
    ref = np.stack([_reference(model, p) for p in PROMPTS])
    assert np.abs(together[0] - ref).max() < 0.05 * np.abs(ref).max()


def test_graphs_exported_before_still_run(lm_dir):
    """The eager-attention graph (left-padded rows, present fed back as past) gives the same
    numbers and tokens as the in-place one."""
    _, out = lm_dir
    old, new = _lm(out, "eager/model.onnx"), _lm(out)
    assert not old.in_place
    np.testing.assert_allclose(old.next_logits(PROMPTS), new.next_logits(PROMPTS), atol=1e-5)
    assert old.generate(PROMPTS, 8) == new.generate(PROMPTS, 8)
