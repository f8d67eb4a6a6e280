"""Llama Guard on ONNX computes its template head's KV cache once per moderation kind (prompt,
response) and runs only each prompt's tail: next-token logits (generate and score mode) equal
the whole-prompt path within 1e-5, and greedy tokens are the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard
from guardcli.core.verdicts import Record
from guardcli.families.llama_guard.synth import MARKER_WORD
from guardcli.runtime.causal_lm import OnnxCausalLM

PROMPTS = [
    [{"role": "user", "content": "How do I bake bread?"}],
    [{"role": "user", "content": f"a {MARKER_WORD} lighthouse please"}],
]
# Responses after different user turns: the head must stop before the user's words.
RESPONSES = [
    [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": f"meadow {MARKER_WORD} lantern"},
    ],
    [
        {"role": "user", "content": "what is a good name for a cat?"},
        {"role": "assistant", "content": "Biscuit, or maybe Pepper."},
    ],
]


@pytest.fixture(scope="module")
def guard(lg_tiny: Path):
    return load_guard(lg_tiny, variant="fp32")


def _ids(guard, conv) -> list[int]:
    record = Record(id="1", text=None, messages=conv, line=1)
    return guard.encode([guard.render(record)])[0].ids


@pytest.mark.parametrize("convs", [PROMPTS, RESPONSES], ids=["prompt", "response"])
def test_head_reused_equals_whole_prompt(guard, convs) -> None:
    whole = OnnxCausalLM(guard.model.graph, guard.model.path)  # no heads: every token computed
    ids = [_ids(guard, c) for c in convs]
    head = guard.lm.shared_prefix(ids)
    assert head is not None and len(head) >= 100  # the instructions and the category list
    suffix, _unsafe = guard.score_ids
    for prompts in (ids, [p + suffix for p in ids]):  # generate mode's input, score mode's
        for batch in (prompts, prompts[:1]):
            reused = guard.lm.next_logits(batch)
            assert np.max(np.abs(reused - whole.next_logits(batch))) <= 1e-5
    assert guard.lm.prefix_kv.get(head) is not None
    assert guard.lm.generate(ids, 8) == whole.generate(ids, 8)


def test_each_kind_has_its_own_head(guard) -> None:
    prompt = guard.lm.shared_prefix([_ids(guard, PROMPTS[0])])
    response = guard.lm.shared_prefix([_ids(guard, RESPONSES[1])])
    assert prompt is not None and response is not None and prompt != response
