"""The tiny trained Llama Guard against transformers (the reference): the prompt its tokenizer's
apply_chat_template makes, next-token logits, greedy tokens, score mode's P(unsafe); batched
equals alone; verdicts, policies and exit codes through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard
from guardcli.families.llama_guard import format as fmt
from guardcli.families.llama_guard.synth import MARKER_WORD

from ...conftest import invoke

CONVERSATIONS = [
    [{"role": "user", "content": "How do I bake bread?"}],
    [{"role": "user", "content": f"a {MARKER_WORD} lighthouse please"}],
    [
        {"role": "user", "content": "hi there"},
        {"role": "assistant", "content": f"meadow {MARKER_WORD} lantern"},
    ],
    [{"role": "user", "content": "garden river morning, a longer question about a teacup"}],
]


@pytest.fixture(scope="module")
def reference(lg_tiny: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        str(lg_tiny), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    return model, AutoTokenizer.from_pretrained(str(lg_tiny))


@pytest.fixture(scope="module")
def guard(lg_tiny: Path):
    return load_guard(lg_tiny, variant="fp32")


def _ids(guard, conv) -> list[int]:
    from guardcli.core.verdicts import Record

    return guard.encode([guard.render(Record(id="1", text=None, messages=conv, line=1))])[0].ids


def test_prompt_ids_equal_apply_chat_template(guard, reference):
    _, tok = reference
    for conv in CONVERSATIONS:
        expected = tok.apply_chat_template(fmt.as_parts(conv), tokenize=True)
        if not isinstance(expected, list):
            expected = expected["input_ids"]
        assert _ids(guard, conv) == list(expected)
        assert _ids(guard, conv).count(tok.convert_tokens_to_ids("<|begin_of_text|>")) == 1


def _reference_logits(torch, model, prompts, pad_id):
    from guardcli.runtime.causal_lm import left_pad

    ids, mask = left_pad(prompts, pad_id)
    pos = np.clip(np.cumsum(mask, axis=1) - 1, 0, None)
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(pos),
        ).logits
    return out[:, -1].float().numpy()


@pytest.mark.slow
def test_onnx_logits_and_greedy_tokens_equal_transformers(guard, reference):
    import torch

    model, tok = reference
    prompts = [_ids(guard, c) for c in CONVERSATIONS]
    expected = _reference_logits(torch, model, prompts, guard.lm.pad_id)
    got = guard.lm.next_logits(prompts)
    assert float(np.abs(got - expected).max()) <= 1e-4
    for prompt in prompts:
        with torch.no_grad():
            out = model.generate(
                input_ids=torch.tensor([prompt]),
                attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
                do_sample=False,
                max_new_tokens=guard.max_new_tokens,
                pad_token_id=guard.lm.pad_id,
                eos_token_id=guard.lm.eos_ids,
            )
        want = out[0, len(prompt) :].tolist()
        ends = [i for i, t in enumerate(want) if t in guard.lm.eos_ids]
        want = want[: ends[0] + 1] if ends else want
        assert guard.lm.generate([prompt], guard.max_new_tokens)[0] == want


def test_score_is_transformers_softmax_at_the_verdict_position(guard, reference):
    import torch

    model, tok = reference
    newline, unsafe = (
        tok.encode("\n\n", add_special_tokens=False),
        tok.convert_tokens_to_ids("unsafe"),
    )
    assert len(newline) == 1
    verdicts = guard.classify([{"messages": c} for c in CONVERSATIONS])
    for conv, verdict in zip(CONVERSATIONS, verdicts, strict=True):
        ids = _ids(guard, conv) + newline
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        expected = float(torch.softmax(logits.double(), -1)[unsafe])
        assert verdict.score == pytest.approx(expected, abs=2e-6)


def test_marker_verdicts_and_categories(guard):
    verdicts = guard.classify([{"messages": c} for c in CONVERSATIONS])
    assert [v.flagged for v in verdicts] == [False, True, True, False]
    assert [v.categories for v in verdicts] == [[], ["Violent Crimes"], ["Violent Crimes"], []]
    assert verdicts[1].score > 0.5 > verdicts[0].score


def test_batched_equals_alone(lg_tiny):
    guard = load_guard(lg_tiny, variant="fp32", batch_size=8)
    records = [{"id": str(i), "messages": c} for i, c in enumerate(CONVERSATIONS)]
    together = guard.classify(records)
    alone = [guard.classify([r])[0] for r in records]
    for a, b in zip(together, alone, strict=True):
        assert a.flagged == b.flagged and a.categories == b.categories
        assert abs(a.score - b.score) <= 1e-5


@pytest.mark.slow
def test_torch_backend_agrees(lg_tiny, guard):
    torch_guard = load_guard(lg_tiny, backend="torch", dtype="float32")
    records = [{"messages": c} for c in CONVERSATIONS]
    for a, b in zip(guard.classify(records), torch_guard.classify(records), strict=True):
        assert (a.flagged, a.categories) == (b.flagged, b.categories)
        assert abs(a.score - b.score) <= 1e-4


# ---------------------------------------------------------------------------- CLI


def test_cli_exit_codes_through_every_door(runner, lg_tiny, tmp_path):
    base = ["classify", "-m", str(lg_tiny), "--format", "jsonl"]
    safe = invoke(runner, [*base, "How do I bake bread?"])
    assert safe.exit_code == 0, safe.stderr
    assert json.loads(safe.stdout)["label"] == "safe"
    flagged = invoke(runner, [*base, "-"], input=f"a {MARKER_WORD} lighthouse please\n")
    assert flagged.exit_code == 1, flagged.stderr
    assert json.loads(flagged.stdout)["categories"] == ["Violent Crimes"]
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "r", "messages": CONVERSATIONS[2]}) + "\n")
    from_file = invoke(runner, [*base, "--input", str(path)])
    assert from_file.exit_code == 1
    assert json.loads(from_file.stdout)["id"] == "r"


def test_cli_policy_exclude_and_show_input(runner, lg_tiny, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("exclude: [S6, S13]\n")
    args = ["classify", "-m", str(lg_tiny), "--policy", str(policy), "--show-input", "hello"]
    shown = invoke(runner, args)
    assert shown.exit_code == 0, shown.stderr
    text = json.loads(shown.stdout)["input"]
    assert "S5: Defamation.\nS7: Privacy." in text and "S13" not in text


def test_cli_policy_categories_fail_closed_on_foreign_codes(runner, lg_tiny, tmp_path):
    """The tiny model answers S1 for the marker; a policy without S1 makes that answer
    unreadable: an error record (flagged with --fail-closed), never a verdict."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[[categories]]\ncode = "C1"\nname = "Discount Codes"\n')
    base = ["classify", "-m", str(lg_tiny), "--policy", str(policy), "--format", "jsonl"]
    shown = invoke(runner, [*base, "--show-input", "hello"])
    text = json.loads(shown.stdout)["input"]
    assert "<BEGIN UNSAFE CONTENT CATEGORIES>\nC1: Discount Codes.\n<END" in text
    result = invoke(runner, [*base, f"a {MARKER_WORD} lighthouse please"])
    row = json.loads(result.stdout)
    assert (
        row["error"]["type"] == "model_output"
        and "'S1' is not a category" in (row["error"]["message"])
    )
    closed = invoke(runner, [*base, "--fail-closed", f"a {MARKER_WORD} lighthouse please"])
    # Flagged under --fail-closed; the exit code says a record could not be judged (an error
    # outranks a flag).
    assert json.loads(closed.stdout)["flagged"] is True and closed.exit_code == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("exclude: [S99]\n", "exclude: S99 not in the model's taxonomy"),
        ("categories: []\n", "categories must be a non-empty list"),
        ("rules: 1\n", "unknown key(s) rules"),
    ],
)
def test_cli_bad_policy_is_a_usage_error(runner, lg_tiny, tmp_path, content, message):
    policy = tmp_path / "policy.yaml"
    policy.write_text(content)
    result = invoke(runner, ["classify", "-m", str(lg_tiny), "--policy", str(policy), "hi"])
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""


def test_long_segments_is_refused_at_the_door(runner, lg_tiny):
    """Llama Guard reads 131,072 tokens: --long (windows of an encoder's short window) is not
    one of its options, and saying so beats ignoring it."""
    result = invoke(runner, ["classify", "-m", str(lg_tiny), "--long", "segments", "hi"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "long (--long) does not apply to the llama-guard family" in result.stderr


@pytest.mark.slow
def test_export_checks_against_transformers_and_runs_the_same(runner, lg_tiny, tmp_path):
    """`guard export` claims a Llama Guard checkpoint (not qwen3guard-gen's recipe), checks its
    graph against transformers, and the exported folder judges as the original does; `guard
    quantize --to int8` makes its INT8 graph."""
    src = tmp_path / "checkpoint"
    src.mkdir()
    for path in lg_tiny.iterdir():
        if path.is_file() and path.name != "guardcli_synthetic.json":
            (src / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "exported"
    result = invoke(runner, ["export", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "greedy generation equal to transformers" in result.stderr + result.stdout
    records = [{"messages": c} for c in CONVERSATIONS]
    a = load_guard(out, variant="fp32").classify(records)
    b = load_guard(lg_tiny, variant="fp32").classify(records)
    assert [(v.flagged, v.categories) for v in a] == [(v.flagged, v.categories) for v in b]
    assert max(abs(x.score - y.score) for x, y in zip(a, b, strict=True)) <= 1e-5
    # The KV-cache graph quantizes with the causal recipe; INT8 keeps the tiny model's verdicts.
    quantized = invoke(runner, ["quantize", str(out), "--to", "int8"])
    assert quantized.exit_code == 0, quantized.stderr
    c = load_guard(out, variant="int8").classify(records)
    assert [(v.flagged, v.categories) for v in c] == [(v.flagged, v.categories) for v in b]


def test_sweep_measures_a_policy(runner, lg_tiny, tmp_path):
    """`guard sweep --policy` scores labelled records under the policy (the docs' way to
    measure one); a bad policy is a usage error there too."""
    data = tmp_path / "labelled.jsonl"
    rows = [
        {"id": "1", "text": f"a {MARKER_WORD} lighthouse please", "label": 1},
        {"id": "2", "text": "How do I bake bread?", "label": 0},
        {"id": "3", "text": f"teacup {MARKER_WORD} meadow", "label": 1},
        {"id": "4", "text": "garden river morning", "label": 0},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    policy = tmp_path / "policy.yaml"
    policy.write_text("exclude: [S6]\n")
    args = ["sweep", str(data), "-m", str(lg_tiny), "--policy", str(policy), "--format", "json"]
    result = invoke(runner, args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["n"], report["positives"], report["roc_auc"]) == (4, 2, 1.0)
    policy.write_text("exclude: [S99]\n")
    bad = invoke(runner, args)
    assert bad.exit_code == 2 and "exclude: S99" in bad.stderr
