"""How a served batch of streams runs on the exported graph (pool.PoolBatch): streams that
append one token each beside their caches run as one session run of several rows; streams that
append several tokens beside a cache run one at a time (onnxruntime's CPU GroupQueryAttention
refuses several rows there), without a failed attempt; either way each stream's logits are
those it gets alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard
from guardcli.families.qwen3guard_stream.served import SlotRunner

# Slow as a whole (served stream batches on FP32 and INT8 with run counts: ~2 s); `make test` runs
# it.
pytestmark = pytest.mark.slow


def ids(n: int, seed: int) -> list[int]:
    return [int(x) for x in np.random.default_rng(seed).integers(100, 150_000, n)]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_one_token_appends_share_a_run_and_longer_ones_run_alone(
    stream_model: Path, variant: str
) -> None:
    batch = load_guard(stream_model, variant=variant).stream_engine().forward_batch
    assert batch.runner.shared  # the GroupQueryAttention graph

    def slots(prompts: list[list[int]]) -> list[SlotRunner]:
        made = [SlotRunner(lambda slot, new: batch([(slot, new)])[0]) for _ in prompts]
        for slot, prompt in zip(made, prompts, strict=True):
            slot.feed(prompt)
        return made

    prompts = [ids(5, 0), ids(9, 1), ids(3, 2)]
    steps = [[ids(1, 10 + i)[0]] for i in range(3)], [ids(4, 20 + i) for i in range(3)]
    together, alone = slots(prompts), slots(prompts)
    for step in steps:
        batch.forwards.clear()
        shared = batch(list(zip(together, step, strict=True)))
        assert batch.forwards == ({3: 1} if len(step[0]) == 1 else {1: 3})
        for slot, new, got in zip(alone, step, shared, strict=True):
            for mine, ref in zip(got, slot.feed(new), strict=True):
                np.testing.assert_allclose(mine, ref, atol=1e-5, rtol=0)
