"""Dialogue-intent classifiers: formatting byte-exact against a reference written from the
authors' format_ctx/build_model_text (spec §4), ONNX against transformers, CLI doors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from guardcli.core.resolve import local_family, resolve
from guardcli.families.loader import load_guard

from ...conftest import invoke

REF_ROLES = {"user": "user", "you": "user", "assistant": "assistant", "bot": "assistant"}


def ref_format_ctx(messages: list[dict], max_turns: int = 8) -> str:
    turns = []
    for m in messages:
        role = {**REF_ROLES, "system": "system"}.get(str(m.get("role", "")).strip().lower())
        text = (m.get("content") or "").strip()
        if text:
            turns.append((role or "unknown", text))
    if turns and turns[-1][0] == "assistant":
        turns = turns[:-1]
    return "\n\n".join(f"[{r}] {t}" for r, t in turns[-max_turns:])


def ref_build_model_text(task: str, ctx: str, tok, max_len: int = 4096) -> str:
    prefix = f"任务描述:\n{task}\n\nctx:\n"
    budget = max_len - len(tok(prefix, add_special_tokens=False)["input_ids"]) - 8
    ids = tok(ctx, add_special_tokens=False)["input_ids"]
    if len(ids) > budget:
        ctx = tok.decode(ids[-budget:])
    return prefix + ctx


def ref_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    tok.truncation_side = "left"
    return tok


@pytest.fixture(scope="module")
def ref_tok(intent_model: Path):
    return ref_tokenizer(intent_model)


LONG = " ".join(f"第{i}句 sentence number {i}, café ☕." for i in range(40))
DIALOGUES = [
    [
        {"role": "system", "content": "  A role-play about a lighthouse keeper.  "},
        {"role": "You", "content": "hi there"},
        {"role": "bot", "content": "Hello! The lamp is lit."},
        {"role": "user", "content": "   "},
        {"role": "narrator", "content": "Night falls."},
        {"role": "user", "content": "tell me about the storm\n"},
        {"role": "assistant", "content": "the pending reply under review"},
    ],
    [{"role": "user", "content": f"turn {i}"} for i in range(12)],
    [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": ""},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": None},
    ],
    [{"role": "user", "content": LONG}, {"role": "assistant", "content": "ok"}],
    [{"role": "user", "content": "你好，灯塔今晚亮吗？"}],
]


def _jsonl(dialogues) -> str:
    return "".join(json.dumps({"id": i, "messages": d}) + "\n" for i, d in enumerate(dialogues))


@pytest.mark.slow
@pytest.mark.parametrize("max_length", [4096, 80])
def test_show_input_is_byte_exact(runner, intent_model: Path, ref_tok, max_length: int) -> None:
    task = (intent_model / "task_description.txt").read_text(encoding="utf-8").strip()
    tok = ref_tok
    args = ["classify", "-m", str(intent_model), "--show-input", "--max-length", str(max_length)]
    result = invoke(runner, [*args, "-"], input=_jsonl(DIALOGUES))
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [ref_build_model_text(task, ref_format_ctx(d), tok, max_length) for d in DIALOGUES]
    assert [r["input"] for r in rows] == expected
    assert max_length == 80 or rows[0]["input"].endswith(
        "ctx:\n[system] A role-play about a lighthouse keeper.\n\n[user] hi there\n\n"
        "[assistant] Hello! The lamp is lit.\n\n[unknown] Night falls.\n\n"
        "[user] tell me about the storm"
    )
    if max_length == 80:  # the context was cut from the left; the task description never
        assert all(r["input"].startswith(f"任务描述:\n{task}\n\nctx:\n") for r in rows)
        assert "第0句" not in rows[3]["input"] and "第39句" in rows[3]["input"]


@pytest.mark.slow
def test_scores_match_transformers_with_left_padding(intent_model: Path, ref_tok) -> None:
    from transformers import AutoModelForSequenceClassification

    guard = load_guard(intent_model, variant="fp32")
    verdicts = guard.classify([{"messages": d} for d in DIALOGUES])
    task = (intent_model / "task_description.txt").read_text(encoding="utf-8").strip()
    tok = ref_tok
    texts = [ref_build_model_text(task, ref_format_ctx(d), tok) for d in DIALOGUES]
    model = AutoModelForSequenceClassification.from_pretrained(str(intent_model)).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=4096, return_tensors="pt")
    assert (enc["attention_mask"][:, 0] == 0).any()  # some rows really are left-padded
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits, -1)[:, 1].numpy()
    np.testing.assert_allclose([v.score for v in verdicts], probs, atol=1e-4)
    for v, p in zip(verdicts, probs, strict=True):
        assert v.flagged == (p >= 0.5) and v.label == ("unsafe" if v.flagged else "safe")


@pytest.mark.slow
def test_variants_agree_with_fp32(intent_model: Path) -> None:
    records = [{"messages": d} for d in DIALOGUES]
    fp32 = [v.score for v in load_guard(intent_model, variant="fp32").classify(records)]
    for variant in ("int8",):  # fp16 follows the CSAM recipe, tested in test_export
        other = [v.score for v in load_guard(intent_model, variant=variant).classify(records)]
        np.testing.assert_allclose(other, fp32, atol=0.15)


def test_truncation_is_reported(intent_model: Path) -> None:
    guard = load_guard(intent_model, variant="int8", max_length=80)
    short, long = guard.classify([{"messages": DIALOGUES[4]}, {"messages": DIALOGUES[3]}])
    assert not short.truncated and long.truncated and long.tokens <= 80


def test_folder_is_a_dialogue_model(intent_model: Path, tiny_model: Path) -> None:
    assert local_family(intent_model) == "dialogue"
    model = resolve(intent_model, "fp32")
    assert (model.family, model.max_length, model.name) == ("dialogue", 4096, "intent-ctx")
    assert local_family(tiny_model) == "seqcls"


def test_records_without_turns_are_error_records(runner, intent_model: Path) -> None:
    data = _jsonl([[{"role": "assistant", "content": "only the reply"}], DIALOGUES[4]])
    data += "plain text is one user turn\n"
    result = invoke(runner, ["classify", "-m", str(intent_model), "-f", "jsonl", "-"], input=data)
    assert result.exit_code == 2
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["error"]["type"] == "empty_text" and rows[0]["flagged"] is None
    assert rows[1]["score"] is not None and rows[2]["score"] is not None
    assert [r["id"] for r in rows] == [0, 1, "3"]


def test_content_that_is_not_a_string_is_an_error_record(runner, intent_model: Path) -> None:
    """A list of content parts was judged as its Python repr; now it is named, not judged."""
    parts = [{"type": "text", "text": "hello"}]
    data = _jsonl([[{"role": "user", "content": parts}], [{"role": "user", "content": "hello"}]])
    result = invoke(runner, ["classify", "-m", str(intent_model), "-f", "jsonl", "-"], input=data)
    assert result.exit_code == 2, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["error"]["type"] == "bad_field" and rows[0]["flagged"] is None
    assert "messages[1].content must be a string" in rows[0]["error"]["message"]
    assert rows[1]["score"] is not None


@pytest.mark.slow
def test_sweep_on_dialogues_matches_scikit_learn(runner, intent_model: Path, tmp_path) -> None:
    """sweep reads `messages` records like classify does; its AUC is scikit-learn's on the
    scores classify gives the same records."""
    from sklearn.metrics import roc_auc_score

    dialogues = [
        [{"role": "user", "content": f"turn {i} about the {word}"}]
        for i, word in enumerate(
            ["lamp", "storm", "harbour", "gull", "tide", "fog", "pier", "mast"]
        )
    ] + DIALOGUES
    records = [{"id": i, "messages": d, "label": i % 2} for i, d in enumerate(dialogues)]
    data = tmp_path / "dialogues.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    swept = invoke(runner, ["sweep", str(data), "-m", str(intent_model), "-f", "json"])
    assert swept.exit_code == 0, swept.stderr
    report = json.loads(swept.stdout)
    args = ["classify", "-m", str(intent_model), "-f", "jsonl", "-q", "--input", str(data)]
    verdicts = [json.loads(line) for line in invoke(runner, args).stdout.splitlines()]
    assert [v["id"] for v in verdicts] == [r["id"] for r in records]
    expected = roc_auc_score([r["label"] for r in records], [v["score"] for v in verdicts])
    assert report["roc_auc"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_task_description_prefix_is_computed_once_with_the_same_scores(
    intent_model: Path, variant: str
) -> None:
    """With the KV graph beside the variant, the task-description prefix runs once and rows
    continue from its KV: scores equal the whole-prompt graph's within 1e-5, and a row scores
    the same alone as in a batch (INT8 quantizes per row)."""
    records = [{"messages": d} for d in DIALOGUES]
    reused = load_guard(intent_model, variant=variant)
    whole = load_guard(intent_model, variant=variant)
    whole.__dict__["prefix_lm"] = None  # the whole-prompt path: the variant's own graph
    assert reused.prefix_lm is not None and reused.prefix_lm.path.name.startswith("model_kv")
    got = [v.score for v in reused.classify(records)]
    want = [v.score for v in whole.classify(records)]
    assert len(reused.prefix_lm.prefix_kv) == 1  # the prefix's KV was computed and kept
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    alone = [reused.classify([r])[0].score for r in records]
    np.testing.assert_allclose(alone, got, atol=1e-5, rtol=0)
