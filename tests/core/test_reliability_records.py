"""Fail closed and lose nothing: no single input line can end or shorten a run, output lines are
always valid UTF-8 JSON, and an empty input never passes the gate."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from guardcli.core.errors import ExitCode
from guardcli.core.records import ReadOptions, VerdictWriter, parse_line
from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.jobs.classify import Summary

from ..conftest import invoke

GOOD = [
    "a watercolor lighthouse at dusk",
    "a recipe for lentil soup",
    "the train leaves at seven",
]


def _lines(stdout: str) -> list[dict]:
    def no_constant(name):
        raise AssertionError(f"{name} is not JSON")

    return [json.loads(line, parse_constant=no_constant) for line in stdout.splitlines()]


def _alone(runner, tiny_model: Path, texts: list[str]) -> dict[str, float]:
    """Scores of the good texts classified without any bad neighbour (the reference)."""
    data = "".join(json.dumps({"id": f"g{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    args = ["classify", "-", "-m", str(tiny_model), "--variant", "fp32", "--format", "jsonl"]
    result = invoke(runner, args, data)
    return {row["id"]: row["score"] for row in _lines(result.stdout)}


def _run(runner, tiny_model: Path, data: str | bytes, *args: str):
    # fp32: dynamic int8 scales per batch, so a score would depend on its neighbours
    base = ["classify", "-", "-m", str(tiny_model), "--variant", "fp32", "--format", "jsonl"]
    return invoke(runner, [*base, *args], data)


def _with_bad(bad: bytes) -> bytes:
    """The good records, with `bad` in the middle of the same chunk."""
    good = [json.dumps({"id": f"g{i}", "text": t}).encode() for i, t in enumerate(GOOD)]
    return b"\n".join([good[0], bad, good[1], good[2]]) + b"\n"


# ----------------------------------------------------------------------------- one bad line


@pytest.mark.slow
def test_deep_json_line_is_its_own_error_and_neighbours_are_judged(runner, tiny_model):
    deep = b'{"text": ' + b"[" * 1000 + b"]" * 1000 + b"}"  # ~2 KB, nested 1,000 deep
    deeper = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    data = _with_bad(deep)[:-1] + b"\n" + deeper + b"\n"
    result = _run(runner, tiny_model, data)
    rows = _lines(result.stdout)
    assert result.exit_code == ExitCode.INPUT
    assert [r["id"] for r in rows] == ["g0", "2", "g1", "g2", "5"]
    assert rows[1]["error"]["type"] == "invalid_json"
    assert rows[1]["error"]["line"] == 2
    assert rows[4]["error"]["type"] == "invalid_json"
    reference = _alone(runner, tiny_model, GOOD)
    assert {r["id"]: r["score"] for r in rows if "error" not in r} == reference
    assert "Traceback" not in result.stderr


def test_parse_line_never_raises_on_deep_nesting():
    record = parse_line(b"[" * 200_000, 1, ReadOptions())  # plain text: judged as text
    assert record.error is None
    record = parse_line(b'{"x":' + b"[" * 200_000 + b"]" * 200_000 + b"}", 3, ReadOptions())
    assert record.error is not None and record.error.type == "invalid_json"
    assert record.error.line == 3 and record.id == "3"


@pytest.mark.slow
@pytest.mark.parametrize(
    "bad",
    [
        b'{"id": "bad", "text": "x\\ud800y"}',
        b'{"id": "bad", "text": "\\udfff"}',
        b'{"id": "bad", "prompt": "a \\udc80 b"}',
    ],
)
def test_lone_surrogate_in_text_fails_only_its_record(runner, tiny_model, bad):
    result = _run(runner, tiny_model, _with_bad(bad))
    rows = _lines(result.stdout)
    assert [r["id"] for r in rows] == ["g0", "bad", "g1", "g2"]
    assert rows[1]["error"]["type"] == "invalid_text"
    assert "surrogate" in rows[1]["error"]["message"]
    assert {r["id"]: r["score"] for r in rows if "error" not in r} == _alone(
        runner, tiny_model, GOOD
    )
    assert result.exit_code == ExitCode.INPUT


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv"])
def test_lone_surrogate_in_id_and_kept_field_gives_valid_utf8(runner, tiny_model, fmt):
    bad = b'{"id": "a\\ud800b", "text": "a recipe for soup", "src": "\\udc00"}'
    args = ["classify", "-", "-m", str(tiny_model), "--format", fmt, "--keep", "src"]
    result = invoke(runner, args, _with_bad(bad))
    raw = result.stdout_bytes
    raw.decode("utf-8")  # strict
    assert result.exit_code in (ExitCode.OK, ExitCode.FLAGGED)
    if fmt == "csv":
        assert "a\\ud800b" in raw.decode()
        return
    rows = _lines(raw.decode()) if fmt == "jsonl" else json.loads(raw)
    assert [r["id"] for r in rows] == ["g0", "a\ud800b", "g1", "g2"]
    assert rows[1]["src"] == "\udc00"
    assert "error" not in rows[1]


@pytest.mark.slow
def test_batch_encode_failure_falls_back_to_one_record_at_a_time(tiny_model, monkeypatch):
    from guardcli.families.loader import load_guard

    guard = load_guard(tiny_model, variant="fp32")
    real = guard.tokenizer.encode

    def fragile(texts):
        if any("BOOM" in t for t in texts):
            raise RuntimeError("the tokenizer panicked")
        return real(texts)

    monkeypatch.setattr(guard.tokenizer, "encode", fragile)
    verdicts = guard.classify([GOOD[0], "BOOM goes the text", GOOD[1]])
    assert [v.error.type if v.error else None for v in verdicts] == [None, "invalid_text", None]
    assert "panicked" in verdicts[1].error.message
    monkeypatch.setattr(guard.tokenizer, "encode", real)
    alone = guard.classify([GOOD[0], GOOD[1]])
    assert [verdicts[0].score, verdicts[2].score] == [v.score for v in alone]


@pytest.mark.slow
def test_prepare_failure_is_the_records_error(tiny_model, monkeypatch):
    from guardcli.families.loader import load_guard

    guard = load_guard(tiny_model, variant="fp32")
    real = guard.prepare

    def fragile(record):
        if record.text == "odd":
            raise ValueError("template cannot render this")
        return real(record)

    monkeypatch.setattr(guard, "prepare", fragile)
    verdicts = guard.classify([GOOD[0], "odd", GOOD[1]])
    assert [v.error.type if v.error else None for v in verdicts] == [None, "invalid_text", None]
    assert verdicts[1].error.line == 2


# ----------------------------------------------------------------------------- BOM, blank, empty


@pytest.mark.slow
@pytest.mark.parametrize("door", ["stdin", "file"])
def test_bom_does_not_cost_the_first_record(runner, tiny_model, tmp_path, door):
    data = b"\xef\xbb\xbf" + json.dumps({"id": "first", "text": GOOD[0], "src": "s"}).encode()
    data += b"\n" + json.dumps({"id": "second", "text": GOOD[1]}).encode() + b"\n"
    base = [
        "classify",
        "-m",
        str(tiny_model),
        "--variant",
        "fp32",
        "--format",
        "jsonl",
        "--keep",
        "src",
    ]
    if door == "file":
        path = tmp_path / "in.jsonl"
        path.write_bytes(data)
        result = invoke(runner, [*base, "--input", str(path)])
    else:
        result = invoke(runner, [*base, "-"], data)
    rows = _lines(result.stdout)
    assert [r["id"] for r in rows] == ["first", "second"]
    assert rows[0]["src"] == "s" and "error" not in rows[0]
    reference = _alone(runner, tiny_model, GOOD[:2])
    assert [r["score"] for r in rows] == [reference["g0"], reference["g1"]]


def test_empty_stdin_is_an_input_error(runner, tiny_model):
    result = _run(runner, tiny_model, "")
    assert result.exit_code == ExitCode.INPUT
    assert result.stdout == ""
    assert "no records read" in result.stderr
    assert "--allow-empty" in result.stderr


def test_allow_empty_passes_an_empty_input(runner, tiny_model):
    result = _run(runner, tiny_model, "", "--allow-empty")
    assert result.exit_code == ExitCode.OK
    assert result.stdout == ""


def test_only_blank_lines_is_no_records(runner, tiny_model):
    result = _run(runner, tiny_model, "\n  \n\r\n")
    assert result.exit_code == ExitCode.INPUT
    assert "3 blank lines skipped" in result.stderr
    assert "no records read" in result.stderr


def test_allow_empty_is_in_help(runner):
    result = invoke(runner, ["classify", "--help"])
    assert "--allow-empty" in result.stdout


@pytest.mark.slow
def test_blank_lines_are_skipped_counted_and_ids_stay_line_numbers(runner, tiny_model):
    data = f"{GOOD[0]}\n\n   \n{GOOD[1]}\r\n\t\n{GOOD[2]}\n"
    result = _run(runner, tiny_model, data)
    rows = _lines(result.stdout)
    assert [r["id"] for r in rows] == ["1", "4", "6"]
    assert all("error" not in r for r in rows)
    assert "3 blank lines skipped" in result.stderr
    assert result.exit_code in (ExitCode.OK, ExitCode.FLAGGED)


# ----------------------------------------------------------------------------- broken models


def test_nan_model_gives_valid_json_error_records_and_exit_3(runner, nan_model):
    data = "".join(json.dumps({"id": f"r{i}", "text": t}) + "\n" for i, t in enumerate(GOOD))
    result = _run(runner, nan_model, data)
    assert result.exit_code == ExitCode.MODEL
    rows = _lines(result.stdout)
    assert [r["id"] for r in rows] == ["r0", "r1", "r2"]
    assert all(r["error"]["type"] == "non_finite_score" for r in rows)
    assert all(r["flagged"] is None for r in rows)
    closed = _run(runner, nan_model, data, "--fail-closed")
    assert closed.exit_code == ExitCode.MODEL
    assert all(r["flagged"] is True for r in _lines(closed.stdout))


def test_non_finite_outranks_bad_records_in_the_exit_code():
    summary = Summary()
    summary.add([Verdict.failed(Record(id="1"), RecordError("invalid_json", "x"))])
    assert summary.exit_code == ExitCode.INPUT
    summary.add([Verdict.failed(Record(id="2"), RecordError("non_finite_score", "x"))])
    assert summary.exit_code == ExitCode.MODEL


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "table"])
@pytest.mark.parametrize("fail_closed", [False, True])
def test_writer_refuses_nan_as_a_last_line(fmt, fail_closed):
    import io

    chunk = [
        Verdict(id="ok", flagged=False, score=0.25, model="m"),
        Verdict(id="x1", flagged=False, score=float("nan"), model="m"),
        Verdict(id="x2", flagged=False, score=0.1, categories={"a": {"score": float("inf")}}),
    ]
    out = io.StringIO()
    writer = VerdictWriter(out, fmt, fail_closed=fail_closed)
    writer.write(chunk)
    writer.close()
    text = out.getvalue()
    assert [v.error.type if v.error else None for v in chunk] == [
        None,
        "non_finite_score",
        "non_finite_score",
    ]
    assert chunk[1].flagged is (True if fail_closed else None)
    if fmt in ("jsonl", "json"):
        rows = _lines(text) if fmt == "jsonl" else json.loads(text, parse_constant=_no_constant)
        assert [r["id"] for r in rows] == ["ok", "x1", "x2"]
        assert [r.get("error", {}).get("type") for r in rows] == [
            None,
            "non_finite_score",
            "non_finite_score",
        ]
    elif fmt == "csv":
        import csv

        rows = list(csv.DictReader(io.StringIO(text)))
        assert [r["score"] for r in rows] == ["0.25", "", ""]
        assert rows[1]["error"].startswith("non_finite_score")


def _no_constant(name):
    raise AssertionError(f"{name} is not JSON")


# ----------------------------------------------------------------------------- long lines


# Runs `guard` as a child of a small process and reports the child's peak RSS: a child forked
# straight from pytest would count pytest's own pages (ru_maxrss survives exec).
_MEASURE = """
import resource, subprocess, sys
with open(sys.argv[1], "rb") as i, open(sys.argv[2], "wb") as o:
    code = subprocess.run([sys.executable, "-m", "guardcli", *sys.argv[4:]], stdin=i, stdout=o,
                          stderr=open(sys.argv[3], "wb")).returncode
print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def _child_run(args: list[str], stdin_path: Path, out_path: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of one child `guard` process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    err_path = out_path.with_suffix(".stderr")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(stdin_path), str(out_path), str(err_path), *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    code, rss = (int(x) for x in done.stdout.split())
    return code, err_path.read_text(encoding="utf-8", errors="replace"), rss


# A 10 MB line used to reach 1.3-1.5 GB: the whole text was tokenized before the cut to 384
# tokens. With the character cut the child stays near its start-up size (~180-250 MiB).
RSS_BOUND_MIB = 600


@pytest.mark.slow
def test_ten_megabyte_line_stays_small_and_truncated(tiny_model, tmp_path):
    rng = random.Random(7)
    words = ["alpha", "lighthouse", "river", "stone", "quiet", "garden", "window", "paper"]
    text = " ".join(rng.choice(words) for _ in range(1_800_000))[:10_000_000]
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"id": "big", "text": text}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, err, rss = _child_run(
        ["classify", "-", "-m", str(tiny_model), "--format", "jsonl"], path, out
    )
    [row] = _lines(out.read_text(encoding="utf-8"))
    assert code in (ExitCode.OK, ExitCode.FLAGGED), err
    assert row["id"] == "big" and row["truncated"] is True and row["tokens"] == 384
    assert rss / 1024 < RSS_BOUND_MIB
    # the verdict is that of the text tokenized without a character cut, the tokenizer
    # truncating (on its first 1 MB, 160 times the cut, to keep this process small)
    from guardcli.families.loader import load_guard

    guard = load_guard(tiny_model)
    enc = guard.tokenizer.encode([text[:1_000_000]])[0]
    [judgement] = guard.score_batch([enc])
    assert row["score"] == round(judgement.score, 6)
    print(f"\n10 MB line: peak RSS {rss / 1024:.0f} MiB (bound {RSS_BOUND_MIB} MiB)")


# ----------------------------------------------------------------------------- the fuzz corpus


def fuzz_corpus(n: int = 10_000, seed: int = 20261130) -> tuple[list[bytes], list[str | None]]:
    """(lines, expected id per line: None for a blank line, which yields no record).

    Deep nesting up to 100k, lone surrogates, a BOM, CRLF, NUL, 1 MB and 10 MB lines, wrong
    types, duplicate ids, invalid UTF-8, plain text and good records, in a seeded order."""
    rng = random.Random(seed)
    lines: list[bytes] = []
    ids: list[str | None] = []

    def by_line() -> str:
        return str(len(lines) + 1)

    def add(raw: bytes, rid: str | None) -> None:
        ids.append(rid)
        lines.append(raw)

    add(b"\xef\xbb\xbf" + json.dumps({"id": "bom", "text": "first after a BOM"}).encode(), "bom")
    big = {1: None, 2: None}
    while len(lines) < n:
        kind = rng.randrange(16)
        word = rng.choice(GOOD)
        if kind == 0:
            depth = rng.choice([100, 1000, 10_000, 100_000])
            add(b'{"text":' + b"[" * depth + b"]" * depth + b"}", by_line())
        elif kind == 1:
            rid = f"s{len(lines)}"
            add(json.dumps({"id": rid, "text": "x\ud800y"}).encode(), rid)
        elif kind == 2:
            rid = f"id-\udc00-{len(lines)}"
            add(json.dumps({"id": rid, "text": word}).encode(), rid)
        elif kind == 3:
            rid = f"crlf{len(lines)}"
            add(json.dumps({"id": rid, "text": word}).encode() + b"\r", rid)
        elif kind == 4:
            add(b"nul\x00inside " + word.encode(), by_line())
        elif kind == 5:
            add(json.dumps({"id": "dup", "text": word}).encode(), "dup")
        elif kind == 6:
            add(b"\xff\xfe\xc3(" + word.encode(), by_line())
        elif kind == 7:
            rid = f"t{len(lines)}"
            value = rng.choice([1, 2.5, None, True, [1, 2], {"a": 1}])
            add(json.dumps({"id": rid, "text": value}).encode(), rid)
        elif kind == 8:
            add(rng.choice([b"", b"   ", b"\t", b"\r"]), None)
        elif kind == 9:
            add(b'{"id": "broken", "text": "unterminated', by_line())
        elif kind == 10:
            add(b'{"id": "nan", "text": "n", "score": NaN}', by_line())
        elif kind == 11:
            add(word.encode(), by_line())
        elif kind == 12:
            add(json.dumps({"id": len(lines), "prompt": word}).encode(), str(len(lines)))
        elif kind == 13:
            add(json.dumps({"id": None, "text": "é 灯塔 🙂 " + word}).encode(), by_line())
        elif kind == 14 and rng.random() < 0.01:
            size = 1_000_000 if big[1] is None else (10_000_000 if big[2] is None else 0)
            if size:
                big[1 if big[1] is None else 2] = len(lines)
                rid = f"big{size}"
                add(json.dumps({"id": rid, "text": ("a river " * size)[:size]}).encode(), rid)
        else:
            rid = f"g{len(lines)}"
            add(json.dumps({"id": rid, "text": word}).encode(), rid)
    for size, slot in ((1_000_000, 1), (10_000_000, 2)):
        if big[slot] is None:  # make sure both long lines are there
            at = rng.randrange(1, len(lines))
            rid = f"big{size}"
            lines[at] = json.dumps({"id": rid, "text": ("a river " * size)[:size]}).encode()
            ids[at] = rid
    return lines, ids


@pytest.mark.slow
def test_fuzz_corpus_loses_nothing(tiny_model, tmp_path):
    lines, expected = fuzz_corpus()
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    code, err, rss = _child_run(
        ["classify", "-", "-m", str(tiny_model), "--format", "jsonl"], path, out
    )
    raw = out.read_bytes()
    text = raw.decode("utf-8")  # strict UTF-8
    rows = _lines(text)
    got = [str(r["id"]) for r in rows]
    want = [rid for rid in expected if rid is not None]
    lost = len(want) - len(got)
    duplicated = len(got) - len(set(got)) - (len(want) - len(set(want)))
    reordered = sum(a != b for a, b in zip(got, want, strict=False))
    crashes = int("Traceback" in err or code not in (0, 1, 2))
    blank = sum(rid is None for rid in expected)
    print(
        f"\nfuzz corpus: {len(lines)} lines in ({blank} blank), {len(rows)} records out, "
        f"{lost} lost, {duplicated} duplicated, {reordered} reordered, {crashes} crashes, "
        f"exit {code}, peak RSS {rss / 1024:.0f} MiB (bound {RSS_BOUND_MIB} MiB)"
    )
    assert got == want
    assert code == ExitCode.INPUT
    assert crashes == 0, err[-2000:]
    assert f"{blank} blank lines skipped" in err
    assert rss / 1024 < RSS_BOUND_MIB
    errors = {r["error"]["type"] for r in rows if "error" in r}
    assert {"invalid_json", "invalid_text", "invalid_utf8", "bad_field"} <= errors
    assert rows[0]["id"] == "bom" and "error" not in rows[0]
    long_rows = [r for r in rows if str(r["id"]).startswith("big")]
    assert len(long_rows) == 2 and all(r["truncated"] for r in long_rows)


# ----------------------------------------------------------------------------- the JSON helper


def test_strict_dumps_refuses_nan_and_escapes_what_utf8_cannot_hold():
    from guardcli.core.strict_json import dumps

    for bad in (float("nan"), float("inf"), {"a": [1.0, float("-inf")]}):
        with pytest.raises(ValueError):
            dumps(bad)
    assert json.loads(
        dumps({"a": float("nan"), "b": [float("inf"), 2.5]}, null_non_finite=True)
    ) == {
        "a": None,
        "b": [None, 2.5],
    }
    value = {"id": "a\ud800b", "k\udfff": "x\u2028y\x85z", "t": "灯塔 🙂"}
    text = dumps(value)
    text.encode("utf-8")  # strict
    assert len(text.splitlines()) == 1
    assert "灯塔 🙂" in text  # readable text stays as it is
    assert json.loads(text) == value
