"""`guard stream` through its doors: --prompt or the first stdin line, chunk and per-token
events checked against the reference's one-shot forward, exit 1 at the first flagged pair,
--hold-back, --strict, and options refused at the door (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import invoke

from .helpers import reference_verdicts

SAFE_ANSWER = "the river meadow kettle maple lantern"
UNSAFE_ANSWER = "the river meadow zorblax kettle maple lantern window"
SOFT_ANSWER = "the river quibblex kettle maple lantern"


def lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.mark.slow
def test_per_token_events_match_the_reference(
    runner: CliRunner, stream_model: Path, stream_tokenizer, stream_reference
) -> None:
    args = ["stream", "-m", str(stream_model), "--variant", "fp32", "--per-token"]
    result = invoke(runner, [*args, "--chunk-tokens", "3"], input=f"a garden\n{SAFE_ANSWER}")
    assert result.exit_code == 0, result.stderr
    events = lines(result.stdout)
    qrisk, expected, ids = reference_verdicts(
        stream_reference, stream_tokenizer, "a garden", SAFE_ANSWER
    )
    risk = ["Safe", "Unsafe", "Controversial"]
    assert events[0]["role"] == "user" and events[0]["risk_level"] == risk[qrisk]
    tokens = [e for e in events if e.get("role") == "assistant"]
    assert [e["index"] for e in tokens] == list(range(len(ids)))
    assert [e["risk_level"] for e in tokens] == [risk[r] for r, _, _ in expected]
    assert "".join(e["text"] for e in tokens) == SAFE_ANSWER
    assert [SAFE_ANSWER[e["start"] : e["end"]] for e in tokens] == [e["text"] for e in tokens]
    summary = events[-1]
    assert summary["event"] == "summary" and summary["flagged"] is False
    assert summary["tokens"] == len(ids) and summary["released"] == len(SAFE_ANSWER)


@pytest.mark.slow
def test_prompt_option_and_first_line_agree(runner: CliRunner, stream_model: Path) -> None:
    base = ["stream", "-m", str(stream_model)]
    by_option = invoke(runner, [*base, "--prompt", "a garden"], input=SAFE_ANSWER)
    by_line = invoke(runner, base, input=f"a garden\n{SAFE_ANSWER}")
    assert by_option.exit_code == by_line.exit_code == 0
    assert by_option.stdout == by_line.stdout
    events = lines(by_option.stdout)
    assert [e["event"] for e in events][0] == "prompt" and events[-1]["event"] == "summary"
    chunks = [e for e in events if e["event"] == "chunk"]
    assert "".join(c["text"] for c in chunks) == SAFE_ANSWER
    assert events[-1]["variant"] == "int8"


def test_unsafe_answer_exits_1_and_stops_before_the_flag(
    runner: CliRunner, stream_model: Path
) -> None:
    args = ["stream", "-m", str(stream_model), "--prompt", "a garden", "--chunk-tokens", "1"]
    result = invoke(runner, [*args, "--hold-back", "1"], input=UNSAFE_ANSWER)
    assert result.exit_code == 1, result.stderr
    events = lines(result.stdout)
    summary = events[-1]
    assert summary["flagged"] is True and summary["risk_level"] == "Unsafe"
    offset = summary["first_unsafe_offset"]
    assert UNSAFE_ANSWER[offset:].startswith(" zorblax")
    released = "".join(e["text"] for e in events if e["event"] == "chunk")
    assert released == UNSAFE_ANSWER[:offset]  # nothing from the flagged pair on
    assert summary["stopped"] is True


@pytest.mark.slow
def test_controversial_flags_only_when_strict(runner: CliRunner, stream_model: Path) -> None:
    args = ["stream", "-m", str(stream_model), "--prompt", "a garden"]
    loose = invoke(runner, args, input=SOFT_ANSWER)
    assert loose.exit_code == 0
    assert lines(loose.stdout)[-1]["risk_level"] == "Controversial"
    strict = invoke(runner, [*args, "--strict"], input=SOFT_ANSWER)
    assert strict.exit_code == 1
    at = SOFT_ANSWER.index(" quibblex")  # the tiny model flags from inside the word on
    assert at <= lines(strict.stdout)[-1]["first_unsafe_offset"] < at + len(" quibblex")


def test_unsafe_prompt_exits_1_before_reading_the_answer(
    runner: CliRunner, stream_model: Path
) -> None:
    result = invoke(runner, ["stream", "-m", str(stream_model)], input="zorblax\nanything")
    assert result.exit_code == 1
    events = lines(result.stdout)
    assert events[0]["risk_level"] == "Unsafe"
    assert events[-1]["flagged"] is True and events[-1]["tokens"] == 0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--chunk-tokens", "0"], "--chunk-tokens"),
        (["--hold-back", "-1"], "--hold-back"),
        (["--variant", "fp8"], "Unknown --variant 'fp8' for a stream."),
        (["--threads", "0"], "--threads"),
    ],
)
def test_bad_options_are_refused_at_the_door(
    runner: CliRunner, tmp_path: Path, extra: list[str], message: str
) -> None:
    # The model folder does not exist: the option is checked before it would be loaded.
    result = invoke(runner, ["stream", "-m", str(tmp_path / "none"), "-p", "x", *extra], "y")
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_missing_model_is_exit_3(runner: CliRunner, tmp_path: Path) -> None:
    result = invoke(runner, ["stream", "-m", str(tmp_path / "none"), "-p", "x"], "y")
    assert result.exit_code == 3
    assert f"Model folder {tmp_path / 'none'} does not exist." in result.stderr
    missing = invoke(runner, ["stream", "-m", "qwen3guard-stream", "-p", "x"], "y")
    assert missing.exit_code == 3
    assert "is not in the local cache" in missing.stderr
    assert "guard fetch qwen3guard-stream" in missing.stderr


def test_window_options_are_refused_for_a_streaming_family(
    runner: CliRunner, stream_model: Path
) -> None:
    result = invoke(runner, ["stream", "-m", str(stream_model), "-p", "x", "--window", "9"])
    assert result.exit_code == 2
    assert "--window does not apply to a qwen3guard-stream model" in result.stderr


@pytest.mark.slow
def test_a_pipe_gets_verdicts_while_the_answer_is_still_arriving(stream_model: Path) -> None:
    """Verdicts come out before stdin ends, and a flag closes stdout and exits 1 while the
    writer is still writing (the pipeline is cut)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    cmd = [sys.executable, "-m", "guardcli", "stream", "-m", str(stream_model)]
    proc = subprocess.Popen(
        [*cmd, "--prompt", "a garden", "--chunk-tokens", "1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"the river meadow kettle ")
    proc.stdin.flush()
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "prompt"
    chunk = json.loads(proc.stdout.readline())  # judged with stdin still open
    assert chunk["event"] == "chunk" and chunk["tokens"] >= 1
    proc.stdin.write(b"zorblax kettle maple lantern ")
    proc.stdin.flush()
    rest = [json.loads(line) for line in proc.stdout]  # ends when guard closes stdout
    assert rest[-1]["event"] == "summary" and rest[-1]["flagged"] is True
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.returncode == 1
    proc.stdin.close()


@pytest.mark.slow
@pytest.mark.parametrize("hold", [0, 3])
def test_hold_back_releases_text_only_after_n_more_tokens(
    runner: CliRunner, stream_model: Path, hold: int
) -> None:
    args = ["stream", "-m", str(stream_model), "-p", "a garden", "--chunk-tokens", "1"]
    result = invoke(runner, [*args, "--hold-back", str(hold)], input=SAFE_ANSWER)
    assert result.exit_code == 0
    events = lines(result.stdout)
    chunks = [e for e in events if e["event"] == "chunk"]
    assert "".join(c["text"] for c in chunks) == SAFE_ANSWER
    for c in chunks[:-1]:  # the last event is the end of the text: everything goes
        assert c["end"] <= c["judged_end"]
        if hold == 0:
            assert c["end"] == c["judged_end"]
    if hold:
        # Nothing is released before hold + 1 tokens have been judged.
        assert all(c["text"] == "" for c in chunks if c["tokens"] <= hold)
        assert any(c["end"] < c["judged_end"] for c in chunks[:-1])


@pytest.mark.slow
def test_a_folder_of_another_family_streams_as_a_windowed_re_check(
    runner: CliRunner, tiny_model: Path
) -> None:
    result = invoke(runner, ["stream", "-m", str(tiny_model), "-p", "x"], "y")
    assert result.exit_code in (0, 1), result.stderr
    assert "has no token-level heads: a windowed re-check" in result.stderr
    events = lines(result.stdout)
    assert events[0]["event"] == "prompt" and events[-1]["event"] == "summary"
    assert {e["mode"] for e in events} == {"window"}
