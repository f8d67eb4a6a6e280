"""The ONNX runner's KV cache: one preallocated buffer per layer, bound as past and present of
GroupQueryAttention, written in place (nothing copied per call); it grows, crops and resets
without changing a logit; and the INT8 graph has every weight MatMul in INT8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from guardcli.families.qwen3guard_stream.runners import BUFFER_STEP, OnnxRunner


def ids(n: int, seed: int = 0) -> list[int]:
    return [int(x) for x in np.random.default_rng(seed).integers(100, 150_000, n)]


def test_the_cache_is_written_in_place(stream_model: Path) -> None:
    runner = OnnxRunner(stream_model / "onnx" / "model.onnx")
    assert runner.shared
    runner.feed(ids(5))
    buffers = [b.ctypes.data for b in runner.past]
    for step in ids(7, seed=1):
        runner.feed([step])
    assert [b.ctypes.data for b in runner.past] == buffers  # same memory: no copy, no growth
    assert runner.past[0].shape[2] == BUFFER_STEP and runner.length == 12


def test_growing_cropping_and_resetting_keep_the_logits(stream_model: Path) -> None:
    seq = ids(BUFFER_STEP + 40)
    one_shot = OnnxRunner(stream_model / "onnx" / "model.onnx").feed(seq)
    runner = OnnxRunner(stream_model / "onnx" / "model.onnx")
    first = runner.feed(seq[:30])
    grown = runner.feed(seq[30:])  # past the first buffer: it doubles, the cache copied over
    assert runner.past[0].shape[2] == 2 * BUFFER_STEP
    for whole, parts in zip(one_shot, zip(first, grown, strict=True), strict=True):
        np.testing.assert_allclose(np.concatenate(parts), whole, atol=1e-5, rtol=0)
    runner.crop(30)
    again = runner.feed(seq[30:40])
    np.testing.assert_array_equal(again[0], grown[0][:10])
    runner.reset()
    np.testing.assert_array_equal(runner.feed(seq[:30])[0], first[0])


def test_int8_quantizes_every_weight_matmul(stream_model: Path) -> None:
    import onnx

    graph = onnx.load(str(stream_model / "onnx" / "model_quantized.onnx")).graph
    weights = {t.name for t in graph.initializer}
    float_weights = [n.name for n in graph.node if n.op_type == "MatMul" and set(n.input) & weights]
    assert float_weights == []
    integer = [n for n in graph.node if n.op_type in ("MatMulInteger", "MatMulIntegerToFloat")]
    layers = 2  # tiny: q, k, v, o, gate, up, down per layer, and the two heads' four layers
    assert len(integer) == 7 * layers + 6
