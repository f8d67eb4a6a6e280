"""Incremental re-tokenization: text arriving in any split (mid-word, mid-token, mid-UTF-8
character) gives the tokens, offsets and verdicts of the whole text tokenized at once, and only
tokens that are final are emitted (Hypothesis random splits)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardcli.families.qwen3guard_stream.labels import ANSWER_PREFIX
from guardcli.families.qwen3guard_stream.retokenize import IncrementalTokenizer
from guardcli.families.qwen3guard_stream.runners import OnnxRunner
from guardcli.families.qwen3guard_stream.stream import StreamJudge

from .helpers import load_maps, reference_verdicts

# Letters, digits, spaces, newlines, tabs, apostrophes (contractions), punctuation, accents
# (precomposed and combining), CJK and an emoji (4 UTF-8 bytes).
ALPHABET = list("abcdeSTxyz0123 \n\t'.,!?-") + [
    "'s",
    "'re",
    "é",
    "e\u0301",
    "ü",
    "中文",
    "😀",
    "  ",
    "\r\n",
    "zorblax",
]
texts = st.lists(st.sampled_from(ALPHABET), min_size=0, max_size=40).map("".join)


def cuts(n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, n), max_size=12).map(sorted)


def whole(tokenizer, text: str):
    enc = tokenizer.encode(ANSWER_PREFIX + text, add_special_tokens=False)
    return [(i, s, e) for i, (s, e) in zip(enc.ids, enc.offsets, strict=True)]


def pieces(data, at: list[int]):
    bounds = [0, *at, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=texts)
def test_text_pieces_give_the_whole_texts_tokens(stream_tokenizer, data, text: str) -> None:
    at = data.draw(cuts(len(text)))
    inc = IncrementalTokenizer(stream_tokenizer, ANSWER_PREFIX)
    got = []
    for piece in pieces(text, at):
        new = inc.push(piece)
        # Emitted tokens are final: they lie wholly inside the text received so far.
        assert all(t.end <= len(inc.text) for t in new)
        got += new
    got += inc.finish()
    assert [(t.id, t.start, t.end) for t in got] == whole(stream_tokenizer, text)


@pytest.mark.parametrize(
    "split", [["aaa\n", " ", "\n"], ["aaa\n ", "\n"], ["x\r\n", "\t ", " \n", "y"], ["a  ", " b"]]
)
def test_a_whitespace_run_at_the_end_is_held_back_whole(stream_tokenizer, split) -> None:
    """ "\\n" and " " are two pieces until a newline follows and makes them one ("\\n \\n"):
    found by the byte-split property (text 'aaa\\n \\n')."""
    inc = IncrementalTokenizer(stream_tokenizer, ANSWER_PREFIX)
    got = [t for piece in split for t in inc.push(piece)] + inc.finish()
    assert [(t.id, t.start, t.end) for t in got] == whole(stream_tokenizer, "".join(split))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=texts)
def test_byte_pieces_split_mid_character(stream_tokenizer, data, text: str) -> None:
    raw = text.encode("utf-8")
    at = data.draw(cuts(len(raw)))
    inc = IncrementalTokenizer(stream_tokenizer, ANSWER_PREFIX)
    got = []
    for piece in pieces(raw, at):
        got += inc.push_bytes(piece)
    got += inc.finish()
    assert [(t.id, t.start, t.end) for t in got] == whole(stream_tokenizer, text)


def test_only_the_last_pieces_wait(stream_tokenizer) -> None:
    inc = IncrementalTokenizer(stream_tokenizer)
    assert inc.push("hello") == []  # "hello" may still grow: "helloworld" is another token
    assert [stream_tokenizer.decode([t.id]) for t in inc.push(" wor")] == ["hello"]
    assert inc.pending == " wor"
    assert [stream_tokenizer.decode([t.id]) for t in inc.push("ld and")] == [" world"]
    assert inc.pending == " and"
    assert [stream_tokenizer.decode([t.id]) for t in inc.finish()] == [" and"]


def test_a_finished_stream_takes_no_more_text(stream_tokenizer) -> None:
    inc = IncrementalTokenizer(stream_tokenizer)
    inc.finish()
    with pytest.raises(ValueError, match="finished"):
        inc.push("more")


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=texts.filter(bool), k=st.sampled_from([1, 3, 16, 0]))
def test_streamed_verdicts_equal_the_whole_texts(
    stream_model: Path, stream_tokenizer, stream_reference, data, text: str, k: int
) -> None:
    _, expected, ids = reference_verdicts(stream_reference, stream_tokenizer, "a question", text)
    raw = text.encode("utf-8")
    judge = StreamJudge(
        OnnxRunner(stream_model / "onnx" / "model.onnx"),
        stream_tokenizer,
        load_maps(stream_model),
        chunk_tokens=k,
    )
    judge.start("a question")
    verdicts = []
    for piece in pieces(raw, data.draw(cuts(len(raw)))):
        verdicts += judge.push_bytes(piece)
    verdicts += judge.finish()
    assert [v.token_id for v in verdicts] == ids
    assert [v.risk_level for v in verdicts] == [
        judge.maps["response_risk_level_map"][r] for r, _, _ in expected
    ]
    # Offsets are the whole text's (NFC may map a composed character to fewer offsets), in
    # answer characters, in order.
    n = len(ANSWER_PREFIX)
    offsets = [(max(a - n, 0), b - n) for _, a, b in whole(stream_tokenizer, text) if b > n]
    assert [(v.start, v.end) for v in verdicts] == offsets
    assert verdicts[0].start == 0
    pairs = zip(verdicts, verdicts[1:], strict=False)
    assert all(a.start <= b.start and a.end <= b.end for a, b in pairs)
