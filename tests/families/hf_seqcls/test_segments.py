"""`--long segments`: the verdict equals the worst window scored alone (transformers as the
reference), windows are batched across records, and the windows cover the whole text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import ARCHES

WORDS = "tea lighthouse river bridge morning train museum poem garden bread".split()
LONG = " ".join(WORDS[(i * 7 + i // 3) % len(WORDS)] for i in range(90))
WINDOW = 16


def reference_windows(folder, text, max_length, overlap):
    """Windows cut by hand from transformers' tokens of the whole text, each scored alone:
    [(P(unsafe), char start, char end)]."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    content = max_length - 2  # every architecture here adds one token at each end
    starts = [0]
    while starts[-1] + content < len(ids):
        starts.append(starts[-1] + content - overlap)
    out = []
    for s in starts:
        piece = ids[s : s + content]
        window = [tok.cls_token_id, *piece, tok.sep_token_id]  # the real templates
        assert len(window) <= max_length
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([window])).logits[0].double()
        end = min(s + content, len(ids)) - 1
        out.append((float(logits.softmax(-1)[1]), offsets[s][0], offsets[end][1]))
    return out


@pytest.mark.parametrize(
    "arch", [pytest.param(a, marks=pytest.mark.slow) if a != "bert" else a for a in ARCHES]
)
def test_segments_equal_worst_window_alone(hf_models, arch):
    from guardcli import load_guard

    folder = hf_models(arch)
    guard = load_guard(folder, variant="fp32", max_length=WINDOW, long="segments", overlap=3)
    verdict = guard.classify([LONG])[0]
    windows = reference_windows(folder, LONG, WINDOW, 3)
    assert len(windows) >= 3
    scores = [w[0] for w in windows]
    worst = int(np.argmax(scores))
    assert verdict.score == pytest.approx(scores[worst], abs=1e-4)
    assert verdict.segment == {
        "index": worst,
        "count": len(windows),
        "start": windows[worst][1],
        "end": windows[worst][2],
    }
    assert verdict.flagged == (scores[worst] >= 0.5)
    assert verdict.truncated is False
    assert "segment" in verdict.to_dict()


def test_segments_batched_across_records_equal_each_alone(hf_models):
    from guardcli import load_guard

    guard = load_guard(hf_models("bert"), variant="int8", max_length=WINDOW, long="segments")
    texts = [LONG, "hello world", LONG[:120], "tea " * 40, LONG[50:]]
    together = guard.classify(texts)
    alone = [guard.classify([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert a.score == pytest.approx(b.score, abs=1e-5)
        assert a.segment == b.segment
    assert together[1].segment == {"index": 0, "count": 1, "start": 0, "end": 11}


def test_truncate_is_the_default(hf_models):
    from guardcli import load_guard

    guard = load_guard(hf_models("bert"), variant="fp32", max_length=WINDOW)
    verdict = guard.classify([LONG])[0]
    assert verdict.truncated is True and verdict.tokens == WINDOW
    assert verdict.segment is None and "segment" not in verdict.to_dict()


def test_a_window_that_cannot_be_judged_fails_closed(hf_models, monkeypatch):
    """A NaN in any window is an error record (flagged under --fail-closed), never safe."""
    from guardcli import load_guard

    guard = load_guard(
        hf_models("bert"), variant="fp32", max_length=WINDOW, long="segments", fail_closed=True
    )
    real = guard.logits

    def poisoned(batch):
        out = real(batch)
        out[-1, :] = np.nan  # one window of the batch
        return out

    monkeypatch.setattr(guard, "logits", poisoned)
    verdicts = guard.classify([LONG, "hello"])
    broken = [v for v in verdicts if v.error is not None]
    assert broken and all(v.flagged is True for v in broken)
    assert broken[0].error.type == "non_finite_score"


@settings(max_examples=25, deadline=None)
@given(
    words=st.lists(st.sampled_from([*WORDS, "é", "🙂", "a\u0301", "  "]), max_size=80),
    overlap=st.integers(0, 9),
)
def test_windows_cover_the_text(hf_models, words, overlap):
    from tokenizers import Tokenizer

    from guardcli.families.hf_seqcls.segments import Segmenter

    folder = hf_models("roberta")
    seg = Segmenter(folder, 12, overlap)
    text = " ".join(words)
    full = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(
        text, add_special_tokens=False
    )
    windows = seg.windows([text])[0]
    assert windows and all(len(w.enc.ids) <= 12 for w in windows)
    content = [w.enc.ids[1:-1] for w in windows]  # <s> ... </s>
    rebuilt = list(content[0])
    for prev, cur in zip(content, content[1:], strict=False):
        assert cur[:overlap] == prev[len(prev) - overlap :]
        rebuilt += cur[overlap:]
    assert rebuilt == full.ids  # every token of the text, in order, none twice
    assert [w.index for w in windows] == list(range(len(windows)))
    assert all(0 <= w.start <= w.end <= len(text) for w in windows)


def test_segments_keep_one_verdict_per_record_in_order(hf_models):
    from guardcli import load_guard

    guard = load_guard(hf_models("bert"), variant="fp32", max_length=WINDOW, long="segments")
    verdicts = guard.classify([{"id": "a", "text": LONG}, {"id": "b"}, {"id": "c", "text": "hi"}])
    assert [v.id for v in verdicts] == ["a", "b", "c"]
    assert verdicts[1].error is not None and verdicts[1].flagged is None
    assert verdicts[0].segment["count"] > 1 and verdicts[2].segment["count"] == 1
