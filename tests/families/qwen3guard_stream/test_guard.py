"""Qwen3Guard-Stream as a classify guard: prompt verdicts from the query heads at <|im_end|>,
response verdicts by the consecutive rule over the reference's per-token argmax."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardcli.families.qwen3guard_stream.guard import load_stream_guard, render_conversation

from .helpers import CONVERSATIONS, reference_verdicts

LEVELS = ["Safe", "Unsafe", "Controversial"]


def consecutive(levels: list[int]) -> str:
    """The authors' response rule, written out (spec §6)."""
    for wanted in (1, 2):
        if any(a == b == wanted for a, b in zip(levels, levels[1:], strict=False)):
            return LEVELS[wanted]
    return "Safe"


@pytest.mark.parametrize("variant", ["fp32", "torch"])
def test_verdicts_follow_the_reference(
    stream_model: Path, stream_tokenizer, stream_reference, variant: str
) -> None:
    guard = load_stream_guard(str(stream_model), variant)
    records = []
    for prompt, answer in CONVERSATIONS:
        records.append({"text": prompt or "x"})
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
        records.append({"messages": msgs})
    verdicts = guard.classify(records)
    for n, (prompt, answer) in enumerate(CONVERSATIONS):
        qrisk, _, _ = reference_verdicts(stream_reference, stream_tokenizer, prompt or "x", "")
        _, tokens, _ = reference_verdicts(stream_reference, stream_tokenizer, prompt, answer)
        assert verdicts[2 * n].severity == LEVELS[qrisk]
        expected = consecutive([r for r, _, _ in tokens])
        assert verdicts[2 * n + 1].severity == expected, answer
        assert verdicts[2 * n + 1].flagged == (expected == "Unsafe")


def test_strict_flags_controversial(stream_model: Path) -> None:
    msgs = [
        {"role": "user", "content": "a garden"},
        {"role": "assistant", "content": "the river quibblex kettle maple lantern"},
    ]
    loose = load_stream_guard(str(stream_model), "fp32").classify([{"messages": msgs}])[0]
    strict = load_stream_guard(str(stream_model), "fp32", strict=True).classify(
        [{"messages": msgs}]
    )[0]
    assert loose.severity == strict.severity == "Controversial"
    assert (loose.flagged, strict.flagged) == (False, True)
    assert strict.categories == ["PII"]


def test_render_is_the_streamed_layout() -> None:
    text = render_conversation(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    )
    assert text == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na"
