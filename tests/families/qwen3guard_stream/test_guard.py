"""Qwen3Guard-Stream as a classify guard: prompt verdicts from the query heads at <|im_end|>,
response verdicts by the consecutive rule over the reference's per-token argmax."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.families.qwen3guard_stream.guard import load_stream_guard, render_conversation

from ...conftest import invoke
from .helpers import CONVERSATIONS, reference_verdicts

LEVELS = ["Safe", "Unsafe", "Controversial"]


def consecutive(levels: list[int]) -> str:
    """The authors' response rule, written out (spec §6)."""
    for wanted in (1, 2):
        if any(a == b == wanted for a, b in zip(levels, levels[1:], strict=False)):
            return LEVELS[wanted]
    return "Safe"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", pytest.param("torch", marks=pytest.mark.slow)])
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
        # strict by default, as for qwen3guard-gen (classify's --strict/--loose)
        assert verdicts[2 * n + 1].flagged == (expected in ("Unsafe", "Controversial"))


@pytest.mark.slow
def test_strict_flags_controversial(stream_model: Path) -> None:
    msgs = [
        {"role": "user", "content": "a garden"},
        {"role": "assistant", "content": "the river quibblex kettle maple lantern"},
    ]
    loose = load_stream_guard(str(stream_model), "fp32", strict=False).classify(
        [{"messages": msgs}]
    )[0]
    strict = load_stream_guard(str(stream_model), "fp32").classify([{"messages": msgs}])[0]
    assert loose.severity == strict.severity == "Controversial"
    assert (loose.flagged, strict.flagged) == (False, True)
    assert strict.categories == ["PII"]


@pytest.mark.slow
def test_classify_strict_by_default_and_loose_on_request(runner, stream_model: Path) -> None:
    """guard classify's --strict/--loose reaches the stream guard as it reaches qwen3guard-gen."""
    msgs = [
        {"role": "user", "content": "a garden"},
        {"role": "assistant", "content": "the river quibblex kettle maple lantern"},
    ]
    line = json.dumps({"id": "c", "messages": msgs}) + "\n"
    base = ["classify", "-m", str(stream_model), "--variant", "fp32", "-f", "jsonl", "-"]
    strict = invoke(runner, base, input=line)
    loose = invoke(runner, [*base, "--loose"], input=line)
    assert (strict.exit_code, loose.exit_code) == (1, 0), (strict.stderr, loose.stderr)
    assert json.loads(strict.stdout)["severity"] == json.loads(loose.stdout)["severity"]


def test_render_is_the_streamed_layout() -> None:
    text = render_conversation(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    )
    assert text == "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\na"


def test_the_registry_claims_a_stream_folder(stream_model: Path, tmp_path: Path) -> None:
    from guardcli.core import registry

    assert registry.folder_family(stream_model).name == "qwen3guard-stream"
    # A downloaded checkpoint has no guardcli marker: the architecture is what says so.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((stream_model / "config.json").read_text())
    assert registry.folder_family(bare).name == "qwen3guard-stream"
    assert "qwen3guard-stream" in registry.synth_builders()


def test_load_guard_and_classify_route_to_the_stream_guard(
    stream_model: Path, stream_tokenizer, stream_reference
) -> None:
    from typer.testing import CliRunner

    from guardcli import load_guard
    from guardcli.families.qwen3guard_stream.guard import StreamGuard
    from tests.conftest import invoke

    guard = load_guard(str(stream_model))
    assert isinstance(guard, StreamGuard)
    assert guard.variant == "int8"  # auto: INT8, then FP32, then torch
    assert load_guard(str(stream_model), variant="fp32").variant == "fp32"

    prompt, answer = next((p, a) for p, a in CONVERSATIONS if p and a)
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    _, tokens, _ = reference_verdicts(stream_reference, stream_tokenizer, prompt, answer)
    expected = consecutive([r for r, _, _ in tokens])
    line = json.dumps({"id": "a", "messages": messages})
    result = invoke(
        CliRunner(),
        ["classify", "-m", str(stream_model), "--variant", "fp32", "--format", "jsonl", "-"],
        input=line + "\n",
    )
    assert result.exit_code == (1 if expected == "Unsafe" else 0), result.stderr
    verdict = json.loads(result.stdout)
    assert (verdict["id"], verdict["severity"]) == ("a", expected)
    assert verdict["variant"] == "fp32"
