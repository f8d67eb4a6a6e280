"""The FP16 variant (the existing FP16 recipe, its KV cache FP16 too) against FP32 and the
reference, through guard stream, guard bench --mode stream and the served batches.

Tolerance: FP16 keeps 11 significant bits (unit roundoff 2^-11 ~ 4.9e-4). Each of the tiny
model's 2 layers rounds its weights, its activations and its cached keys/values once, and the
heads read the result; the logits are at most ~10 in magnitude, so a few roundoffs each give a
few 1e-3. The bound, 2e-2 absolute (2e-3 of the logits' scale, ~4 roundoffs), leaves room for
that and is far below the margins the verdicts are decided by: every verdict must be FP32's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from guardcli.families.qwen3guard_stream.export import LOGIT_OUTPUTS, fp16_folder
from guardcli.families.qwen3guard_stream.runners import OnnxRunner
from guardcli.families.qwen3guard_stream.stream import StreamJudge

from ...conftest import invoke
from .helpers import CONVERSATIONS, load_maps, reference_verdicts, stream_together
from .test_convert import streamed
from .test_export import padded_batch

# Slow as a whole (the FP16 export and every FP16 path (guard, bench, serve) on the tiny stream
# model: ~12 s); `make test` runs it.
pytestmark = pytest.mark.slow

TOLERANCE = 2e-2
runner = CliRunner()


@pytest.fixture(scope="module")
def fp16_model(stream_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tmp_path_factory.mktemp("stream-fp16") / "qs"
    shutil.copytree(stream_model, model)
    fp16_folder(model)
    return model


def test_fp16_logits_are_fp32s_within_the_tolerance(fp16_model: Path) -> None:
    from guardcli.families.qwen3guard_stream.resolve import resolve_folder

    assert resolve_folder(fp16_model, "auto", None).variant == "int8"  # never FP16 first
    run = OnnxRunner(fp16_model / "onnx" / "model_fp16.onnx")
    assert run.shared and run.dtype == np.float16  # the cache is updated in place, in FP16
    have = streamed(fp16_model / "onnx" / "model_fp16.onnx")
    want = streamed(fp16_model / "onnx" / "model.onnx")
    for name, a, b in zip(LOGIT_OUTPUTS, have, want, strict=True):
        assert a.dtype == np.float32, name
        assert float(np.abs(a - b).max()) <= TOLERANCE, name


def test_fp16_verdicts_are_the_references(fp16_model: Path, stream_tokenizer, stream_reference):
    maps = load_maps(fp16_model)
    risk = maps["response_risk_level_map"]
    for prompt, answer in CONVERSATIONS:
        _, expected, _ = reference_verdicts(stream_reference, stream_tokenizer, prompt, answer)
        judge = StreamJudge(
            OnnxRunner(fp16_model / "onnx" / "model_fp16.onnx"), stream_tokenizer, maps
        )
        judge.start(prompt)
        got = [v.risk_level for v in judge.push(answer) + judge.finish()]
        assert got == [risk[r] for r, _, _ in expected], prompt


def test_fp16_rows_do_not_depend_on_their_batch(fp16_model: Path) -> None:
    run = OnnxRunner(fp16_model / "onnx" / "model_fp16.onnx")
    short = [151644, 872, 198, 9707, 1879, 11, 432]
    alone = run.feed(short)[0]
    loud = [151644, 872, 198] + [99999] * 20 + [151645]
    together = padded_batch(run, [short, loud])[0]
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)


def test_guard_stream_variant_fp16(fp16_model: Path) -> None:
    prompt, answer = CONVERSATIONS[0]
    runs = {}
    for variant in ("fp32", "fp16"):
        result = invoke(
            runner,
            ["stream", "-m", str(fp16_model), "-p", prompt, "--variant", variant, "--per-token"],
            input=answer,
        )
        assert result.exit_code == 1, result.stderr  # the answer holds the marker word
        events = [json.loads(line) for line in result.stdout.splitlines()]
        assert events[-1]["variant"] == variant
        runs[variant] = [(e.get("risk_level"), e.get("text")) for e in events[:-1]]
    assert runs["fp16"] == runs["fp32"]


def test_bench_stream_variant_fp16(fp16_model: Path) -> None:
    args = ["--mode", "stream", "--chunk-tokens", "4", "--contexts", "16", "--format", "json"]
    result = invoke(runner, ["bench", "-m", str(fp16_model), *args, "--variant", "fp16"])
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)["results"]
    assert row["variant"] == "fp16" and row["agreement_vs_reference"] == 1.0
    assert row["max_abs_dlogit_vs_reference"] <= TOLERANCE


def test_served_fp16_streams_batch_and_keep_the_references_verdicts(
    fp16_model: Path, stream_tokenizer, stream_reference
) -> None:
    """guard serve --variant fp16: streams appended together share padded forwards (FP16
    caches), and every verdict is the reference's."""
    pytest.importorskip("starlette")
    from guardcli import load_guard

    guard = load_guard(fp16_model, variant="fp16")
    prompt = "tell me about a garden"
    answers = [CONVERSATIONS[0][1], "the river meadow lantern kettle maple by the window"] * 2

    got, metrics = stream_together(guard, prompt, answers, piece=10)
    assert metrics.value("stream_batch_size_sum") / metrics.value("stream_batch_size_count") > 1
    risk = load_maps(fp16_model)["response_risk_level_map"]
    for answer, verdicts in zip(answers, got, strict=True):
        _, expected, _ = reference_verdicts(stream_reference, stream_tokenizer, prompt, answer)
        assert [v["risk_level"] for v in verdicts] == [risk[r] for r, _, _ in expected]
