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


@pytest.mark.slow  # a bench run with its GEMM limit
def test_bench_counts_only_the_operations_a_reused_head_leaves(
    runner, lg_tiny, guard, quick_gemm_timing
):
    """Score mode reuses the template head's KV: `guard bench` counts those tokens in
    tokens_per_s (they are the input) but not in the operations each prompt ran, so a share of
    the limit is not inflated by work that was not done."""
    import json

    from guardcli.runtime.graph_ops import graph_ops

    from ...conftest import invoke

    args = ["bench", "-m", str(lg_tiny), "--variant", "fp32", "--mode", "score"]
    args += ["--batch-size", "1", "--seq-len", "12", "--duration", "0.3", "--limits", "-f", "json"]
    report = json.loads(invoke(runner, args).stdout)
    (row,) = report["results"]
    heads = {len(h) for h in guard.lm.prefixes}
    assert row["reused_tokens"] % row["prompts"] == 0
    head = row["reused_tokens"] // row["prompts"]
    assert head in heads  # every prompt started with the prompt-moderation head
    ops = graph_ops(lg_tiny / "onnx" / "model.onnx")
    tokens = row["tokens"] / row["prompts"]
    done = ops.per_sequence(tokens) - ops.per_sequence(head)
    assert row["achieved_gops"] == pytest.approx(done * row["prompts_per_s"] / 1e9)
    assert row["achieved_gops"] < row["ops_per_token"] * row["tokens_per_s"] / 1e9
    assert report["limits"]["seq_len"] == round(tokens - head)


def test_graph_ops_of_the_attention_op_graph_equal_a_hand_count(lg_tiny):
    """The causal graph runs attention as one GroupQueryAttention node per layer, which ONNX
    shape inference does not know: its work and the o_proj after it are still counted."""
    import json

    from guardcli.runtime.graph_ops import graph_ops

    c = json.loads((lg_tiny / "config.json").read_text())
    h, i, layers = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    heads, kv, d = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    ops = graph_ops(lg_tiny / "onnx" / "model.onnx")
    assert ops.unresolved == 0
    assert ops.c1 == 2 * layers * (h * heads * d + 2 * h * kv * d + heads * d * h + 3 * h * i)
    assert ops.c2 == 2 * layers * 2 * heads * d  # scores and their product with V
    assert ops.c0 == 2 * h * c["vocab_size"]  # the vocabulary head, at the last position only
    q_and_o = {(h, heads * d), (heads * d, h)}  # one shape when heads x head_dim = hidden
    assert sum(ops.weights[shape] for shape in q_and_o) == 2 * layers
