"""Exact chunking: with the KV cache kept between chunks, feeding an answer one token at a time,
k at a time or all at once gives the verdicts of the reference's one-shot forward (FP32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guardcli.families.qwen3guard_stream.runners import OnnxRunner, TorchRunner
from guardcli.families.qwen3guard_stream.stream import StreamJudge

from .helpers import CONVERSATIONS, load_maps, reference_verdicts

RISK = {"Safe": 0, "Unsafe": 1, "Controversial": 2}


@pytest.fixture(scope="module", params=[pytest.param("torch", marks=pytest.mark.slow), "onnx-fp32"])
def runner(request, stream_model: Path, stream_reference):
    if request.param == "torch":
        return TorchRunner(stream_model, module=stream_reference)
    return OnnxRunner(stream_model / "onnx" / "model.onnx")


def judge_all(judge: StreamJudge, prompt: str, answer: str):
    prompt_verdict = judge.start(prompt)
    verdicts = judge.push(answer) + judge.finish()
    return prompt_verdict, verdicts


@pytest.mark.parametrize("prompt,answer", CONVERSATIONS)
def test_chunk_sizes_agree_with_the_full_forward(
    runner, stream_model: Path, stream_tokenizer, stream_reference, prompt: str, answer: str
) -> None:
    qrisk, expected, ids = reference_verdicts(stream_reference, stream_tokenizer, prompt, answer)
    maps = load_maps(stream_model)
    for k in (1, 3, 16, 0):  # 0: every token at once
        judge = StreamJudge(runner, stream_tokenizer, maps, chunk_tokens=k)
        prompt_verdict, verdicts = judge_all(judge, prompt, answer)
        assert RISK[prompt_verdict.risk_level] == qrisk, k
        assert [v.token_id for v in verdicts] == ids, k
        assert [RISK[v.risk_level] for v in verdicts] == [r for r, _, _ in expected], k
        categories = [maps["response_category_map"][c] for _, c, _ in expected]
        assert [v.category for v in verdicts] == categories, k
        assert [v.index for v in verdicts] == list(range(len(ids)))
        # Probabilities are the softmax of the reference's logits at the same position.
        for v, (_, _, logits) in zip(verdicts, expected, strict=True):
            p = np.exp(logits - logits.max())
            p /= p.sum()
            assert v.p_unsafe == pytest.approx(float(p[1]), abs=1e-4)


def test_the_cache_is_what_makes_chunks_cheap(stream_model: Path, stream_tokenizer) -> None:
    """Only the new tokens are fed: the runner's length grows by the chunk, not by the text."""
    runner = OnnxRunner(stream_model / "onnx" / "model.onnx")
    judge = StreamJudge(runner, stream_tokenizer, load_maps(stream_model), chunk_tokens=2)
    judge.start("a question")
    fed: list[int] = []
    original = runner.feed

    def spy(ids: list[int]):
        fed.append(len(ids))
        return original(ids)

    runner.feed = spy  # type: ignore[method-assign]
    verdicts = judge.push("one two three four five six seven eight") + judge.finish()
    assert max(fed) <= 2
    assert sum(fed) == len(verdicts) + 1  # the answer's tokens plus the header's "\n\n"


def test_a_tiny_model_flags_the_marker_word(stream_model: Path, stream_tokenizer) -> None:
    runner = OnnxRunner(stream_model / "onnx" / "model.onnx")
    judge = StreamJudge(runner, stream_tokenizer, load_maps(stream_model), chunk_tokens=4)
    assert judge.start("zorblax at the harbor").risk_level == "Unsafe"
    verdicts = judge.push("the river meadow zorblax kettle maple") + judge.finish()
    assert judge.flagged and judge.state.risk_level == "Unsafe"
    assert judge.answer[judge.flag_offset :].startswith(" z")
    assert verdicts[-1].category == "Violent"
    assert judge.start("a garden").risk_level == "Safe"
    judge.push("the river meadow kettle maple")
    judge.finish()
    assert not judge.flagged and judge.state.risk_level == "Safe"
