"""The ONNX graph with KV cache against the PyTorch reference (every output, every position,
max |Δ logit| <= 1e-4), and its per-row INT8 variant: batch-invariant, chunk-invariant, and
agreeing with the reference on the tiny model's verdicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guardcli.families.qwen3guard_stream.export import LOGIT_OUTPUTS
from guardcli.families.qwen3guard_stream.runners import OnnxRunner
from guardcli.families.qwen3guard_stream.stream import StreamJudge

from .helpers import CONVERSATIONS, load_maps, reference_verdicts

IDS = [151644, 872, 198, 9707, 1879, 11, 432, 594, 6915, 151645, 198, 151644, 77091, 198, 42]


def reference_logits(module, ids: list[int]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(input_ids=torch.tensor([ids]))
    return [getattr(out, name)[0].numpy() for name in LOGIT_OUTPUTS]


def fp32(stream_model: Path) -> OnnxRunner:
    return OnnxRunner(stream_model / "onnx" / "model.onnx")


def int8(stream_model: Path) -> OnnxRunner:
    return OnnxRunner(stream_model / "onnx" / "model_quantized.onnx")


def test_every_output_matches_the_reference(stream_model: Path, stream_reference) -> None:
    expected = reference_logits(stream_reference, IDS)
    runner = fp32(stream_model)
    assert [o.name for o in runner.session.get_outputs()][:4] == list(LOGIT_OUTPUTS)
    got = [[], [], [], []]  # type: list[list[np.ndarray]]
    for chunk in (IDS[:6], IDS[6:7], IDS[7:]):  # a prefill, then steps on the cache
        for out, logits in zip(got, runner.feed(chunk), strict=True):
            out.append(logits)
    for name, want, parts in zip(LOGIT_OUTPUTS, expected, got, strict=True):
        have = np.concatenate(parts)
        assert have.shape == want.shape, name
        assert float(np.abs(have - want).max()) <= 1e-4, name


def padded_batch(runner: OnnxRunner, rows: list[list[int]]) -> list[np.ndarray]:
    """Risk logits of right-padded rows in one call (empty caches; GroupQueryAttention reads
    each row's length from its mask)."""
    width = max(len(r) for r in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    pos = np.tile(np.arange(width, dtype=np.int64), (len(rows), 1))
    empty = np.zeros((len(rows), runner.kv_heads, 0, runner.head_dim), dtype=runner.dtype)
    logits, _ = runner.run_batch(ids, mask, pos, [empty] * len(runner.past_names))
    return [logits[0][i, : len(r)] for i, r in enumerate(rows)]


@pytest.mark.parametrize("variant", [fp32, int8])
def test_a_rows_logits_do_not_depend_on_its_batch(stream_model: Path, variant) -> None:
    runner = variant(stream_model)
    short = IDS[:7]
    alone = runner.feed(short)[0]
    loud = [151644, 872, 198] + [99999] * 20 + [151645]  # other activations, more padding
    together = padded_batch(runner, [short, loud])[0]
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_int8_chunks_agree(stream_model: Path, stream_tokenizer) -> None:
    """Per-row (per-token) activation scales: a token's verdict does not depend on its chunk."""
    maps = load_maps(stream_model)
    for prompt, answer in CONVERSATIONS:
        runs = []
        for k in (1, 16):
            judge = StreamJudge(int8(stream_model), stream_tokenizer, maps, chunk_tokens=k)
            judge.start(prompt)
            runs.append([(v.risk_level, v.category) for v in judge.push(answer) + judge.finish()])
        assert runs[0] == runs[1]


@pytest.mark.slow
def test_int8_verdicts_agree_with_the_reference(
    stream_model: Path, stream_tokenizer, stream_reference
) -> None:
    maps = load_maps(stream_model)
    risk = maps["response_risk_level_map"]
    agree = total = 0
    for prompt, answer in CONVERSATIONS:
        _, expected, _ = reference_verdicts(stream_reference, stream_tokenizer, prompt, answer)
        judge = StreamJudge(int8(stream_model), stream_tokenizer, maps, chunk_tokens=8)
        judge.start(prompt)
        got = [v.risk_level for v in judge.push(answer) + judge.finish()]
        agree += sum(g == risk[r] for g, (r, _, _) in zip(got, expected, strict=True))
        total += len(expected)
    assert agree / total >= 0.9, f"{agree}/{total}"
