"""`guard classify` through every door, every bad-record case and every exit code, on the tiny
model with real onnxruntime."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guardcli import load_guard
from guardcli.core.batching import plan_batches

from ..conftest import SAMPLES, invoke

TEXTS = [
    "a watercolor lighthouse at dusk",
    "studio photo of a ceramic teapot, softbox lighting",
    "cyberpunk street market in the rain, neon reflections",
    "ein Aquarell eines Leuchtturms bei Sonnenuntergang",
    "東京の夜景、ネオンと雨",
]


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


def without_ids(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "id"} for r in rows]


@pytest.fixture
def model_args(tiny_model: Path) -> list[str]:
    return ["--model", str(tiny_model), "--variant", "fp32", "--quiet"]


@pytest.mark.slow
def test_every_input_route_gives_the_same_verdicts(runner, model_args, tmp_path: Path) -> None:
    by_args = invoke(runner, ["classify", *model_args, "-f", "jsonl", *TEXTS])
    plain = "\n".join(TEXTS) + "\n"
    by_stdin = invoke(runner, ["classify", *model_args, "-f", "jsonl", "-"], input=plain)
    by_pipe = invoke(runner, ["classify", *model_args, "-f", "jsonl"], input=plain)
    records = "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    path = tmp_path / "in.jsonl"
    path.write_text(records)
    by_file = invoke(runner, ["classify", *model_args, "-f", "jsonl", "--input", str(path)])
    by_json_stdin = invoke(runner, ["classify", *model_args, "-f", "jsonl", "-"], input=records)
    outs = [jsonl(r.stdout) for r in (by_args, by_stdin, by_pipe, by_file, by_json_stdin)]
    assert all(len(o) == len(TEXTS) for o in outs)
    assert all(without_ids(o) == without_ids(outs[0]) for o in outs)
    assert [r["id"] for r in outs[0]] == ["1", "2", "3", "4", "5"]
    assert [r["id"] for r in outs[3]] == [f"r{i}" for i in range(5)]
    assert by_args.stderr == ""  # --quiet: nothing for people, and data only on stdout


@pytest.mark.slow
def test_batched_padded_scores_equal_single_prompt_scores(tiny_model: Path) -> None:
    texts = [json.loads(line)["text"] for line in (SAMPLES / "prompts.jsonl").open()][:40]
    batched = load_guard(tiny_model, variant="fp32", batch_size=16).classify(texts)
    single = load_guard(tiny_model, variant="fp32", batch_size=1).classify(texts)
    assert [v.id for v in batched] == [v.id for v in single]
    diffs = [abs(a.score - b.score) for a, b in zip(batched, single, strict=True)]
    assert max(diffs) <= 1e-5
    assert len({len(t) for t in texts}) > 10  # the batches really did carry padding


def test_plan_batches_covers_each_index_once_within_budget() -> None:
    lengths = [5, 300, 17, 17, 2, 384, 90, 33, 1, 250] * 7
    batches = plan_batches(lengths, batch_size=8, token_budget=1024)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 8
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 1024


@pytest.mark.slow
def test_order_and_ids_survive_length_bucketing(runner, model_args) -> None:
    lines = (SAMPLES / "prompts.jsonl").read_text()
    result = invoke(runner, ["classify", *model_args, "-f", "jsonl", "-"], input=lines)
    ids = [json.loads(line)["id"] for line in lines.splitlines()]
    assert [r["id"] for r in jsonl(result.stdout)] == ids
    assert result.exit_code in (0, 1)


@pytest.mark.slow
def test_truncation_is_reported(runner, model_args) -> None:
    long_text = "a very long scene description, " * 200
    result = invoke(runner, ["classify", *model_args, "-f", "jsonl", "short", long_text])
    short, long_ = jsonl(result.stdout)
    assert (short["truncated"], long_["truncated"]) == (False, True)
    assert long_["tokens"] == 384
    cut = invoke(runner, ["classify", *model_args, "-f", "jsonl", "--max-length", "8", long_text])
    assert jsonl(cut.stdout)[0]["tokens"] == 8


BAD_INPUT = (
    b'{"id": "a", "text": "a red bicycle"}\n'
    b'{"id": "b", "text": \n'  # broken JSON object
    b"\n"  # blank line: skipped, counted on stderr (its number stays taken)
    b'{"id": "d", "caption": "no text field"}\n'
    b'{"id": "e", "text": "   "}\n'  # empty text
    b"caf\xe9 latin-1 bytes\n"  # invalid UTF-8
    b'{"id": "g", "text": 42}\n'  # text is not a string
    b'{"prompt": "uses the prompt fallback"}\n'
    b"plain text line\n"
)
EXPECTED_ERRORS = {
    "2": "invalid_json",
    "d": "missing_field",
    "e": "empty_text",
    "6": "invalid_utf8",
    "g": "bad_field",
}


def test_bad_records_yield_error_records_in_place(runner, model_args) -> None:
    result = invoke(runner, ["classify", *model_args, "-f", "jsonl", "-"], input=BAD_INPUT)
    rows = jsonl(result.stdout)
    ids = ["a", "2", "d", "e", "6", "g", "8", "9"]
    assert [r["id"] for r in rows] == ids
    errors = {r["id"]: r["error"]["type"] for r in rows if "error" in r}
    assert errors == EXPECTED_ERRORS
    for row in rows:
        if "error" in row:
            assert row["flagged"] is None
            line = ids.index(row["id"]) + 1
            assert row["error"]["line"] == (line if line < 3 else line + 1)
        else:
            assert isinstance(row["score"], float)
    assert result.exit_code == 2  # an error outranks a flag


def test_fail_closed_flags_bad_records(runner, model_args) -> None:
    result = invoke(
        runner, ["classify", *model_args, "-f", "jsonl", "--fail-closed", "-"], input=BAD_INPUT
    )
    rows = jsonl(result.stdout)
    assert all(r["flagged"] is True for r in rows if "error" in r)
    assert result.exit_code == 2


def test_exit_codes_0_and_1(runner, model_args, tiny_model: Path) -> None:
    verdicts = load_guard(tiny_model, variant="fp32").classify(TEXTS)
    low = min(v.score for v in verdicts)
    high = max(v.score for v in verdicts)
    ok = invoke(runner, ["classify", *model_args, "-t", str(high + 1e-3), *TEXTS])
    assert ok.exit_code == 0
    flagged = invoke(runner, ["classify", *model_args, "-f", "jsonl", "-t", str(low), *TEXTS])
    assert flagged.exit_code == 1
    assert all(r["flagged"] for r in jsonl(flagged.stdout))


def test_usage_errors_exit_2(runner, model_args, tmp_path: Path) -> None:
    bad_format = invoke(runner, ["classify", *model_args, "-f", "xml", "x"])
    assert bad_format.exit_code == 2
    assert "Unknown format 'xml'" in bad_format.stderr
    assert bad_format.stdout == ""
    both = invoke(runner, ["classify", *model_args, "--input", str(tmp_path / "x"), "text"])
    assert both.exit_code == 2
    missing = invoke(runner, ["classify", *model_args, "--input", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2
    assert "Cannot read" in missing.stderr
    bad_variant = invoke(runner, ["classify", *model_args[:2], "--variant", "int4", "x"])
    assert bad_variant.exit_code == 2
    assert "Unknown variant 'int4'" in bad_variant.stderr


def test_model_errors_exit_3(runner, tiny_model: Path, tmp_path: Path) -> None:
    missing = invoke(runner, ["classify", "--model", "csam-guard", "--variant", "int8", "x"])
    assert missing.exit_code == 3
    assert "Model 'csam-guard' (int8) is not in the cache." in missing.stderr
    assert "Run `guard fetch csam-guard --variant int8`" in missing.stderr
    assert "Traceback" not in missing.stderr
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken, ignore=shutil.ignore_patterns("model_*.onnx"))
    (broken / "onnx" / "model.onnx").write_bytes(b"not an onnx file")
    corrupt = invoke(runner, ["classify", "--model", str(broken), "x"])
    assert corrupt.exit_code == 3
    assert "onnxruntime could not load" in corrupt.stderr
    no_variant = invoke(runner, ["classify", "--model", str(broken), "--variant", "int8", "x"])
    assert no_variant.exit_code == 3
    assert "has no int8 variant (found: fp32)" in no_variant.stderr
    nowhere = invoke(runner, ["classify", "--model", str(tmp_path / "nowhere"), "x"])
    assert nowhere.exit_code == 3
    assert "does not exist" in nowhere.stderr


def test_guard_debug_shows_traceback(runner) -> None:
    os.environ["GUARD_DEBUG"] = "1"
    try:
        from guardcli.cli import app
        from guardcli.core.errors import GuardError

        result = runner.invoke(app, ["classify", "--model", "csam-guard", "x"])
        assert isinstance(result.exception, GuardError)
    finally:
        del os.environ["GUARD_DEBUG"]


@pytest.mark.slow
def test_keep_id_field_and_text_field(runner, model_args) -> None:
    data = json.dumps({"uid": 7, "body": "a red bicycle", "lang": "en", "extra": [1]}) + "\n"
    args = ["--id-field", "uid", "--text-field", "body", "--keep", "lang", "--keep", "extra"]
    result = invoke(runner, ["classify", *model_args, "-f", "jsonl", *args, "-"], input=data)
    (row,) = jsonl(result.stdout)
    assert row["id"] == 7 and row["lang"] == "en" and row["extra"] == [1]
    assert "score" in row
    # An explicit --text-field does not fall back to text/prompt.
    other = invoke(
        runner,
        ["classify", *model_args, "-f", "jsonl", "--text-field", "body", "-"],
        input='{"text": "x"}\n',
    )
    assert jsonl(other.stdout)[0]["error"]["type"] == "missing_field"


@pytest.mark.slow
def test_output_formats_carry_the_same_verdicts(runner, model_args) -> None:
    as_jsonl = jsonl(invoke(runner, ["classify", *model_args, "-f", "jsonl", *TEXTS]).stdout)
    as_json = json.loads(invoke(runner, ["classify", *model_args, "-f", "json", *TEXTS]).stdout)
    assert as_json == as_jsonl
    as_csv = list(
        csv.DictReader(
            io.StringIO(invoke(runner, ["classify", *model_args, "-f", "csv", *TEXTS]).stdout)
        )
    )
    assert [r["id"] for r in as_csv] == [r["id"] for r in as_jsonl]
    assert [float(r["score"]) for r in as_csv] == [r["score"] for r in as_jsonl]
    table = invoke(runner, ["classify", *model_args, "-f", "table", *TEXTS]).stdout
    assert all(f"{r['score']:.4f}" in table for r in as_jsonl)


def test_verdict_schema(runner, model_args) -> None:
    (row,) = jsonl(invoke(runner, ["classify", *model_args, "-f", "jsonl", "a teapot"]).stdout)
    assert list(row) == [
        "id", "flagged", "score", "threshold", "label", "categories", "severity", "refusal",
        "model", "variant", "tokens", "truncated",
    ]  # fmt: skip
    assert row["threshold"] == 0.5 and row["variant"] == "fp32"
    assert row["label"] == ("unsafe" if row["flagged"] else "safe")


def test_show_input_prints_model_text_without_classifying(runner, model_args) -> None:
    data = '{"id": "x", "text": "a red bicycle"}\n{"id": "y"}\n'
    result = invoke(runner, ["classify", *model_args, "--show-input", "-"], input=data)
    rows = jsonl(result.stdout)
    assert rows[0] == {"id": "x", "input": "a red bicycle"}
    assert rows[1]["error"]["type"] == "missing_field"


@pytest.mark.slow
def test_variants_all_run(runner, tiny_model: Path) -> None:
    for variant in ("fp32", "fp16", "int8", "auto"):
        result = invoke(
            runner, ["classify", "-m", str(tiny_model), "--variant", variant, "-f", "jsonl", "x"]
        )
        assert result.exit_code in (0, 1), result.stderr
        assert jsonl(result.stdout)[0]["variant"] in ("fp32", "fp16", "int8")


@pytest.mark.slow
def test_synthetic_model_is_announced(runner, tiny_model: Path) -> None:
    result = invoke(runner, ["classify", "-m", str(tiny_model), "-f", "jsonl", "a teapot"])
    assert "synthetic model with random weights" in result.stderr
    assert "synthetic" not in result.stdout


@pytest.mark.slow
def test_library_api_accepts_strings_and_dicts(tiny_model: Path) -> None:
    guard = load_guard(tiny_model, variant="fp32")
    verdicts = guard.classify(["a teapot", {"id": "k", "text": "a kettle"}, {"id": "z"}])
    assert [v.id for v in verdicts] == ["1", "k", "z"]
    assert verdicts[2].error is not None and verdicts[2].flagged is None
    assert 0.0 <= verdicts[0].score <= 1.0


@pytest.mark.slow
def test_jsonl_streams_before_eof(tiny_model: Path) -> None:
    """A slow producer gets each verdict while stdin is still open."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardcli", "classify", "-m", str(tiny_model), "-q", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout
    try:
        for n in range(2):
            proc.stdin.write(json.dumps({"id": n, "text": f"prompt {n}"}).encode() + b"\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 60
            ready: list = []
            while not ready and time.monotonic() < deadline:
                ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            assert ready, "no verdict while stdin was still open"
            assert json.loads(proc.stdout.readline())["id"] == n
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
    assert proc.returncode in (0, 1)


@pytest.mark.slow
def test_reader_closing_stdout_is_not_an_error(tiny_model: Path) -> None:
    """`guard classify - | head -1`: the pipe closes early; no traceback, exit 0."""
    lines = "".join(f"prompt {n}\n" for n in range(3000)).encode()
    proc = subprocess.Popen(
        [sys.executable, "-m", "guardcli", "classify", "-m", str(tiny_model), "-q", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    proc.stdin.write(lines)
    proc.stdin.close()
    assert json.loads(proc.stdout.readline())["id"] == "1"
    proc.stdout.close()
    proc.wait(timeout=120)
    stderr = proc.stderr.read().decode()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
