"""`guard stream` for families without token heads: the windowed re-check. Every window's
verdict equals the guard's own verdict of that window's text judged alone (as a response after
the prompt for dialogue families); windows do not depend on how the answer's bytes arrive;
the first flagged window stops the stream and releases nothing of it; a window the model cannot
judge stops it too (fail closed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from guardcli.families.loader import load_guard
from guardcli.jobs.stream_window import WindowedStream
from tests.conftest import invoke

ANSWER = (
    "The lighthouse keeper climbed the stairs at dusk, trimmed the wick, and wrote the "
    "weather in the log: wind from the west, a light swell, gulls on the breakwater. "
    "Ünïcödé snow 雪 and a kettle on the stove."
)


def run(stream: WindowedStream, pieces: list[bytes], prompt: str = "a lighthouse"):
    events: list[dict] = []
    summary = stream.run(prompt, iter(pieces), events.append)
    return events, summary


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@pytest.fixture(scope="module")
def guard(tiny_model: Path):
    """Threshold 1: nothing is flagged, so every window is judged."""
    return load_guard(tiny_model, variant="fp32", threshold=1.0)


@pytest.mark.slow
def test_each_window_is_the_guards_verdict_of_its_text_alone(guard) -> None:
    stream = WindowedStream(guard, window=40, overlap=15)
    events, summary = run(stream, [ANSWER.encode()])
    windows = [e for e in events if e["event"] == "window"]
    assert events[0]["event"] == "prompt" and events[0]["mode"] == "window"
    assert events[0]["score"] == pytest.approx(guard.classify(["a lighthouse"])[0].score, abs=1e-6)
    assert len(windows) == -(-len(ANSWER) // 40)
    for w in windows:
        assert w["mode"] == "window" and w["end"] - w["start"] <= 40
        assert w["window_start"] == max(0, min(w["start"] - 15, w["end"] - 55))
        alone = guard.classify([ANSWER[w["window_start"] : w["end"]]])[0]
        assert w["score"] == pytest.approx(alone.score, abs=1e-6)
        assert w["flagged"] == alone.flagged
    assert summary["flagged"] is False
    assert "".join(w["text"] for w in windows) == ANSWER
    assert summary["released"] == len(ANSWER) == summary["chars"]
    assert summary["windows"] == len(windows) and summary["mode"] == "window"


@pytest.mark.slow
def test_the_first_flagged_window_stops_the_stream(tiny_model: Path) -> None:
    probe = WindowedStream(load_guard(tiny_model, variant="fp32", threshold=1.0), 30, 10)
    events, _ = run(probe, [ANSWER.encode()])
    scores = [e["score"] for e in events if e["event"] == "window"]
    target = sorted(scores)[-1]  # the highest-scoring window is flagged, and nothing before it
    first = scores.index(target)
    stream = WindowedStream(load_guard(tiny_model, variant="fp32", threshold=target), 30, 10)
    events, summary = run(stream, [ANSWER.encode()])
    windows = [e for e in events if e["event"] == "window"]
    assert len(windows) == first + 1 and windows[-1]["flagged"] is True
    assert windows[-1]["text"] == ""
    assert "".join(w["text"] for w in windows) == ANSWER[: windows[-1]["start"]]
    assert summary["flagged"] is True and summary["stopped"] is True
    assert summary["flagged_window"] == [windows[-1]["window_start"], windows[-1]["end"]]
    assert summary["exit_code"] == 1


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_windows_do_not_depend_on_how_the_bytes_arrive(guard, cuts: list[int]) -> None:
    stream = WindowedStream(guard, window=33, overlap=7)
    whole, _ = run(stream, [ANSWER.encode()])
    pieces, _ = run(stream, split(ANSWER.encode(), cuts))
    assert pieces == whole


def test_a_window_the_model_cannot_judge_stops_the_stream(nan_model: Path) -> None:
    stream = WindowedStream(load_guard(nan_model, variant="fp32"), 20, 5)
    events, summary = run(stream, [ANSWER.encode()])
    assert events[0]["error"]["type"] == "non_finite_score"
    assert [e["event"] for e in events] == ["prompt", "summary"]
    assert summary["released"] == 0 and summary["stopped"] is True
    assert summary["error"]["type"] == "non_finite_score" and summary["exit_code"] == 3


@pytest.mark.slow
def test_a_dialogue_family_judges_each_window_as_the_response(intent_model: Path) -> None:
    guard = load_guard(intent_model, variant="fp32")
    events, _ = run(WindowedStream(guard, 50, 10), [ANSWER.encode()], prompt="the weather?")
    for w in [e for e in events if e["event"] == "window"]:
        messages = [
            {"role": "user", "content": "the weather?"},
            {"role": "assistant", "content": ANSWER[w["window_start"] : w["end"]]},
        ]
        alone = guard.classify([{"messages": messages}])[0]
        assert w["score"] == pytest.approx(alone.score, abs=1e-6)


@pytest.mark.slow
def test_the_cli_labels_the_windowed_mode(tiny_model: Path) -> None:
    runner = CliRunner()
    args = ["stream", "-m", str(tiny_model), "-p", "a lighthouse", "--window", "60"]
    result = invoke(runner, [*args, "--overlap", "20"], input=ANSWER)
    assert result.exit_code in (0, 1), result.stderr
    assert "windowed re-check" in result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(e["mode"] == "window" for e in events)
    assert events[-1]["event"] == "summary" and "chunk_tokens" not in events[-1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--per-token"], "--per-token and --hold-back need a family with token-level heads"),
        (["--hold-back", "2"], "--per-token and --hold-back need a family with token-level heads"),
        (["--chunk-tokens", "4"], "--chunk-tokens does not apply to a seqcls model"),
        (["--window", "0"], "--window must be at least 1 character"),
        (["--overlap", "-1"], "--overlap must be 0 or more characters"),
    ],
)
def test_token_options_are_refused_for_a_classifier(
    tiny_model: Path, extra: list[str], message: str
) -> None:
    result = invoke(CliRunner(), ["stream", "-m", str(tiny_model), "-p", "x", *extra], "y")
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
