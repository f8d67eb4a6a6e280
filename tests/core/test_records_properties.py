"""Property tests for what reads outside input and what writes output: the record reader, the
verdict writer, and the character cut before tokenizing (which must never change the tokens a
model keeps)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardcli.core.records import ReadOptions, VerdictWriter, read_lines
from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.families.base import cut_record

# ----------------------------------------------------------------------------- the reader

LINE_BYTES = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.builds(
        lambda rid, text: json.dumps({"id": rid, "text": text}).encode(),
        st.one_of(st.text(max_size=8), st.integers(), st.none()),
        st.text(max_size=20),
    ),
    st.sampled_from([b"", b"  ", b"\r", b"\t \r", b"\xef\xbb\xbf", b"{", b"[" * 50, b"NaN"]),
    st.integers(1, 3000).map(lambda n: b'{"text": ' + b"[" * n + b"]" * n + b"}"),
).map(lambda raw: raw.replace(b"\n", b" "))


def _blank(raw: bytes, first: bool) -> bool:
    if first:
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    return not raw.strip()


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(lines=st.lists(LINE_BYTES, max_size=30), final_newline=st.booleans())
def test_reader_one_record_per_non_blank_line_in_order(lines, final_newline):
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    records = list(read_lines(io.BytesIO(data), ReadOptions()))
    expected = [n for n, raw in enumerate(lines, start=1) if not _blank(raw, n == 1)]
    assert [r.line for r in records] == expected
    for record in records:
        raw = lines[record.line - 1]
        if record.line == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        assert record.error is not None or record.text is not None
        if record.error is not None and record.error.type in ("invalid_json", "invalid_utf8"):
            assert record.id == str(record.line)
            continue
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict) and obj.get("id") is not None:
            assert record.id == obj["id"]
        else:
            assert record.id == str(record.line)


# ----------------------------------------------------------------------------- the writer

IDS = st.one_of(
    st.text(max_size=10),
    st.integers(),
    st.sampled_from(["\ud800", "a\udfffb", "\udc00\ud800"]),
    st.none(),
)
SCORES = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.none())


@st.composite
def verdicts(draw):
    rid = draw(IDS)
    if draw(st.booleans()):
        return Verdict.failed(
            Record(id=rid, kept={"src": draw(st.text(max_size=6))}),
            RecordError("invalid_json", draw(st.text(max_size=20)), 3),
            fail_closed=draw(st.booleans()),
        )
    categories = draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=4), SCORES)))
    return Verdict(
        id=rid,
        flagged=draw(st.booleans()),
        score=draw(SCORES),
        categories=categories,
        kept={"note": draw(st.text(max_size=6))},
    )


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(items=st.lists(verdicts(), max_size=12), fail_closed=st.booleans())
def test_writer_always_strict_utf8_json_one_line_per_verdict(items, fail_closed):
    out = io.StringIO()
    writer = VerdictWriter(out, "jsonl", ("note",), fail_closed=fail_closed)
    originals = list(items)
    writer.write(items)
    writer.close()
    data = out.getvalue().encode("utf-8")  # strict: a raw lone surrogate would raise here
    lines = data.decode("utf-8").splitlines()
    assert len(lines) == len(originals)

    def no_constant(name):
        raise AssertionError(f"{name} in the output")

    for line, verdict in zip(lines, originals, strict=True):
        row = json.loads(line, parse_constant=no_constant)
        assert row["id"] == verdict.id
        if not (_finite(verdict.score) and _finite(verdict.categories)):
            assert row["error"]["type"] == "non_finite_score"
            assert row["flagged"] is (True if fail_closed else None)
    # the chunk handed back holds what was written, for the summary
    assert [v.error.type if v.error else None for v in items] == [
        json.loads(line).get("error", {}).get("type") for line in lines
    ]


# ----------------------------------------------------------------------------- the cut

WORDS = [
    "lighthouse",
    "at",
    "dusk",
    "a",
    "watercolor",
    "river,",
    "stone.",
    "Quiet",
    "garden's",
    "1234",
    "3.14159",
    "https://example.org/a/b?c=d",
    "灯塔",
    "黄昏的",
    "水彩",
    "café",
    "naïve",
    "🙂",
    "👍🏽",
    "—",
    "(paren)",
    "\t",
    "\n",
    "  ",
    "aaaaaaaaaaaaaaaaaaaaaaaa",
    "xyzzy",
    "!!!",
]
SEPARATORS = st.sampled_from([" ", " ", " ", "", "\n", ", ", "  "])


@st.composite
def long_texts(draw, limit: int):
    """Texts around and beyond `limit` characters, from words, runs and separators."""
    parts = draw(
        st.lists(
            st.one_of(
                st.sampled_from(WORDS),
                st.builds(lambda c, n: c * n, st.sampled_from("a .-\n9é灯"), st.integers(1, 400)),
                st.text(max_size=6).filter(lambda t: not any("\ud800" <= c <= "\udfff" for c in t)),
            ),
            min_size=1,
            max_size=600,
        )
    )
    seps = draw(st.lists(SEPARATORS, min_size=len(parts), max_size=len(parts)))
    text = "".join(p + s for p, s in zip(parts, seps, strict=True))
    # reach past the cut often: repeat the text to a drawn length
    target = draw(st.integers(limit // 2, limit * 5))
    while text.strip() and len(text) < target:
        text += text
    return text if text.strip() else "placeholder"


@pytest.fixture(scope="module")
def small_seqcls(tiny_model: Path):
    from guardcli.families.loader import load_guard

    return load_guard(tiny_model, variant="fp32", max_length=32)


@pytest.fixture(scope="module")
def small_dialogue(intent_model: Path):
    from guardcli.families.dialogue.guard import model_prefix
    from guardcli.families.loader import load_guard

    probe = load_guard(intent_model, variant="fp32")
    prefix = probe.tokenizer.tokenizer.encode(model_prefix(probe.task_description)).ids
    return load_guard(intent_model, variant="fp32", max_length=len(prefix) + 40)


def _cut_ids(guard, record: Record):
    [enc] = guard._encode_records([record])
    assert not isinstance(enc, RecordError), enc
    return enc.ids, enc.truncated


def _full_ids(guard, record: Record):
    """The reference: the whole text rendered and tokenized, the tokenizer truncating."""
    text, shortened = guard.prepare(record)
    enc = guard.tokenizer.encode([text])[0]
    return enc.ids, enc.truncated or shortened


@pytest.mark.slow
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_cut_keeps_the_tokens_the_whole_text_keeps_right(small_seqcls, data):
    guard = small_seqcls
    text = data.draw(long_texts(guard.char_limit))
    record = Record(id="1", text=text, line=1)
    ids, truncated = _cut_ids(guard, record)
    full, full_truncated = _full_ids(guard, record)
    assert ids == full
    assert truncated == full_truncated


@pytest.mark.slow
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_cut_keeps_the_tokens_the_whole_text_keeps_left(small_dialogue, data):
    guard = small_dialogue
    assert guard.truncation_side == "left"
    text = data.draw(long_texts(guard.char_limit))
    earlier = data.draw(long_texts(guard.char_limit))
    record = Record(
        id="1",
        messages=[
            {"role": "user", "content": earlier},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": text},
        ],
        line=1,
    )
    ids, truncated = _cut_ids(guard, record)
    full, full_truncated = _full_ids(guard, record)
    assert ids == full
    assert truncated == full_truncated


def _prose(n_chars: int, seed: int) -> str:
    import random

    rng = random.Random(seed)
    sentences = [
        "The lighthouse keeper painted the harbour at dusk.",
        "In 1923 the river froze for 41 days; see https://example.org/history?id=7.",
        "黄昏时分，灯塔守护者画下了港口。",
        "Café au lait, naïve façade, résumé — déjà vu!",
        "def f(x):\n    return x ** 2  # a code block",
        "🙂🙂 emoji 👍🏽 and ZWJ 👨‍👩‍👧 sequences.",
    ]
    out: list[str] = []
    size = 0
    while size < n_chars:
        s = rng.choice(sentences)
        out.append(s)
        size += len(s) + 1
    return " ".join(out)[:n_chars]


@pytest.mark.slow
@pytest.mark.parametrize("n_chars", [5_000, 50_000, 400_000])
def test_cut_on_long_real_looking_texts_default_length(tiny_model: Path, n_chars: int):
    from guardcli.families.loader import load_guard

    guard = load_guard(tiny_model, variant="fp32")
    for seed in range(3):
        record = Record(id="1", text=_prose(n_chars, seed), line=1)
        assert _cut_ids(guard, record) == _full_ids(guard, record)
    # one word with no break at all (a pathological pre-token)
    record = Record(id="1", text="ab" * (n_chars // 2), line=1)
    assert _cut_ids(guard, record) == _full_ids(guard, record)


@pytest.mark.slow
def test_cut_on_long_real_looking_dialogue(intent_model: Path):
    from guardcli.families.loader import load_guard

    guard = load_guard(intent_model, variant="fp32")
    for seed in range(2):
        record = Record(
            id="1",
            messages=[
                {"role": "user", "content": _prose(30_000, seed)},
                {"role": "assistant", "content": "a reply"},
                {"role": "user", "content": _prose(200_000, seed + 1)},
            ],
            line=1,
        )
        assert _cut_ids(guard, record) == _full_ids(guard, record)


def test_cut_record_keeps_the_side_the_tokenizer_keeps():
    record = Record(id="1", text="abcdef", messages=[{"role": "user", "content": "uvwxyz"}])
    right = cut_record(record, 2, "right")
    left = cut_record(record, 2, "left")
    assert right is not None and left is not None
    assert (right.text, right.messages) == ("ab", [{"role": "user", "content": "uv"}])
    assert (left.text, left.messages) == ("ef", [{"role": "user", "content": "yz"}])
    assert record.text == "abcdef"  # the record itself is untouched
    assert cut_record(record, 6, "right") is None


@pytest.mark.slow
def test_cut_keeps_the_template_and_the_tokens_qwen3guard():
    """A generative guard renders a chat template around the content: the cut is made in the
    record's messages, so the template stays whole, and the kept tokens equal the whole
    rendering's."""
    from guardcli.families.loader import load_guard
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    guard = load_guard(cached_tiny_qwen3guard(), max_length=260)
    for seed in range(2):
        record = Record(
            id="1",
            messages=[
                {"role": "user", "content": _prose(20_000, seed)},
                {"role": "assistant", "content": _prose(9_000, seed + 5)},
            ],
            line=1,
        )
        cut = cut_record(record, guard.char_limit, guard.truncation_side)
        assert cut is not None
        rendered = guard.render(cut)
        whole = guard.render(record)
        head = whole[: whole.index(record.messages[0]["content"][:50])]
        tail = whole[whole.rindex(record.messages[1]["content"][-50:]) + 50 :]
        assert rendered.startswith(head) and rendered.endswith(tail)
        assert _cut_ids(guard, record) == _full_ids(guard, record)
