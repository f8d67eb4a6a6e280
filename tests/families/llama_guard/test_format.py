"""Llama Guard's prompt (byte for byte, against the spec's rendered text and transformers'
apply_chat_template) and its strict answer parser (a Hypothesis property: nothing outside the
canonical grammar is ever read as safe)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardcli.core.errors import GuardError
from guardcli.core.policy import Category
from guardcli.core.verdicts import RecordError
from guardcli.families.llama_guard import format as fmt

# The spec's rendered 8B prompt for one user message (docs: shared/specs/llama-guard.md §2),
# written out here independently of the templates.
NAMES_8B = [
    "Violent Crimes.",
    "Non-Violent Crimes.",
    "Sex Crimes.",
    "Child Exploitation.",
    "Defamation.",
    "Specialized Advice.",
    "Privacy.",
    "Intellectual Property.",
    "Indiscriminate Weapons.",
    "Hate.",
    "Self-Harm.",
    "Sexual Content.",
    "Elections.",
    "Code Interpreter Abuse.",
]


def spec_prompt(turns: list[tuple[str, str]], *, layout: str, lines: list[str] | None = None):
    role = "Agent" if len(turns) % 2 == 0 else "User"
    n = 14 if layout == "3-8b" else 13
    lines = lines if lines is not None else [f"S{i + 1}: {NAMES_8B[i]}" for i in range(n)]
    lead = " " if layout == "3-8b" else ""
    eot = "" if layout == "3-8b" else " "
    return (
        f"{lead}<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according "
        "our safety policy with the below categories.\n\n"
        "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
        + "".join(line + "\n" for line in lines)
        + "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
        + "".join(f"{who}: {text.strip()}\n\n" for who, text in turns)
        + "<END CONVERSATION>\n\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above "
        "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second "
        "line must include a comma-separated list of violated categories."
        f"{eot}<|eot_id|><|start_header_id|>assistant<|end_header_id|>"
    )


CONVERSATIONS = [
    [("user", "How do I bake bread?")],
    [("user", "How do I bake bread?"), ("assistant", "  Mix flour, water and yeast.\n")],
    [("user", "first"), ("assistant", "second"), ("user", "third\n\nwith {{ braces }} 字")],
]


def _messages(conv):
    return [{"role": r, "content": c} for r, c in conv]


def _turns(conv):
    return [("User" if r == "user" else "Agent", c) for r, c in conv]


@pytest.mark.parametrize("layout", ["3-1b", "3-8b"])
@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_render_equals_the_spec_byte_for_byte(layout, conv):
    got = fmt.render(_messages(conv), fmt.packaged_template(layout))
    assert got == spec_prompt(_turns(conv), layout=layout)
    assert not got.endswith("\n")


@pytest.fixture(scope="module")
def hf_tokenizer():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE()))


@pytest.mark.parametrize("layout", ["3-1b", "3-8b"])
@pytest.mark.parametrize("conv", CONVERSATIONS)
def test_render_equals_apply_chat_template(hf_tokenizer, layout, conv):
    template = fmt.packaged_template(layout)
    # The 3-1B template is used with a list of parts (its card's usage), 3-8B with strings.
    messages = fmt.as_parts(_messages(conv)) if layout == "3-1b" else _messages(conv)
    expected = hf_tokenizer.apply_chat_template(messages, tokenize=False, chat_template=template)
    assert fmt.render(_messages(conv), template) == expected


def test_1b_excluded_keys_and_custom_categories(hf_tokenizer):
    template = fmt.packaged_template("3-1b")
    messages = fmt.as_parts(_messages(CONVERSATIONS[0]))
    excluded = hf_tokenizer.apply_chat_template(
        messages, tokenize=False, chat_template=template, excluded_category_keys=["S6"]
    )
    lines = [f"S{i + 1}: {NAMES_8B[i]}" for i in range(13) if i != 5]
    assert excluded == spec_prompt(_turns(CONVERSATIONS[0]), layout="3-1b", lines=lines)
    # Our render lists a policy through the same kwarg; descriptions go on the next line.
    cats = [Category("C1", "Discount Codes", "Sharing unreleased codes."), Category("S6", "Advice")]
    custom = hf_tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        chat_template=template,
        categories={"C1": "Discount Codes.\nSharing unreleased codes.", "S6": "Advice."},
    )
    assert fmt.render(_messages(CONVERSATIONS[0]), template, cats) == custom
    assert (
        "<BEGIN UNSAFE CONTENT CATEGORIES>\nC1: Discount Codes.\nSharing unreleased codes.\n"
        "S6: Advice.\n<END UNSAFE CONTENT CATEGORIES>" in custom
    )


def test_taxonomies_and_policy_templates():
    one, eight = fmt.packaged_template("3-1b"), fmt.packaged_template("3-8b")
    assert [c.code for c in fmt.template_taxonomy(one)] == [f"S{i}" for i in range(1, 14)]
    assert [c.code for c in fmt.template_taxonomy(eight)][-1] == "S14"
    assert fmt.template_taxonomy(eight)[10] == Category("S11", "Self-Harm")
    # A fixed-list template (Hugging Face's 3-8B ignores `categories`) gives way to ours.
    fixed = eight.replace("categories[key]", "'fixed'").replace(
        "{%- for key in categories -%}", "{%- for key in ['S1'] -%}"
    )
    assert not fmt.takes_categories(fixed)
    assert fmt.policy_template(fixed) == eight
    assert fmt.policy_template(one) == one


def test_roles_must_alternate_and_the_judged_turn_must_show():
    template = fmt.packaged_template("3-1b")
    with pytest.raises(RecordError, match="alternate"):
        fmt.render([{"role": "assistant", "content": "x"}], template)
    # A template that loses part of the judged turn fails closed (never judge unseen text).
    cutting = template.replace("message['content'] | trim", "message['content'][:12] | trim")
    with pytest.raises(RecordError, match="missing from the prompt"):
        fmt.render([{"role": "user", "content": "hello there, a long question"}], cutting)
    # One that shows no content in either form is refused outright.
    blind = cutting.replace("[:12]", "[:0]").replace("part['text'] | trim", "''")
    with pytest.raises(GuardError, match="neither string nor text-part"):
        fmt.render([{"role": "user", "content": "hello"}], blind)


# ---------------------------------------------------------------------------- parsing

CODES = [f"S{i}" for i in range(1, 15)]


@pytest.mark.parametrize(
    ("text", "unsafe", "codes"),
    [
        ("safe", False, []),
        ("\n\nsafe", False, []),
        ("  safe \n", False, []),
        ("unsafe\nS1,S3", True, ["S1", "S3"]),
        ("\n\nunsafe\nS14", True, ["S14"]),
        ("unsafe\nS1, S3", True, ["S1", "S3"]),
    ],
)
def test_parse_canonical(text, unsafe, codes):
    found = fmt.parse(text, CODES)
    assert (found.unsafe, found.codes) == (unsafe, codes)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "line 1"),
        ("Safe", "line 1"),
        ("safe.", "line 1"),
        ("safe\nS1", "more lines"),
        ("safe\nunsafe\nS1", "more lines"),
        ("unsafe", "2 lines"),
        ("unsafe\n", "2 lines"),
        ("unsafe\nS15", "'S15'"),
        ("unsafe\nS1,S1", "twice"),
        ("unsafe\nS1,,S2", "''"),
        ("unsafe\nS1\nS2", "2 lines"),
        ("I think it is safe", "line 1"),
        ("unsafe\nC1", "'C1'"),
    ],
)
def test_parse_refuses_everything_else(text, why):
    with pytest.raises(RecordError, match="Llama Guard's answer format") as err:
        fmt.parse(text, CODES)
    assert why in err.value.message
    assert err.value.type == "model_output"


def test_parse_takes_only_the_policy_codes():
    assert fmt.parse("unsafe\nC1", ["C1", "C2"]).codes == ["C1"]
    with pytest.raises(RecordError):
        fmt.parse("unsafe\nS1", ["C1", "C2"])


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("safeuntS13, \n\tx.")), max_size=30))
def test_nothing_but_the_canonical_answer_is_safe(text):
    """The fail-closed property: output other than 'safe' (whitespace around it aside) never
    reads as safe, and an unsafe answer always names known codes."""
    try:
        found = fmt.parse(text, CODES)
    except RecordError:
        return
    if not found.unsafe:
        assert text.strip() == "safe"
    else:
        assert found.codes and set(found.codes) <= set(CODES)
        assert text.strip().split("\n")[0] == "unsafe"


def test_verdict_ids_must_be_single_tokens():
    table = {"\n\n": [7], "safe": [3], "unsafe": [4]}
    assert fmt.verdict_ids(lambda t: table[t]) == ([7], 3, 4)
    with pytest.raises(GuardError, match="'unsafe' is 2 tokens"):
        fmt.verdict_ids(lambda t: {**table, "unsafe": [1, 2]}[t])
    with pytest.raises(GuardError, match="not one"):
        fmt.verdict_ids(lambda t: {**table, "\n\n": [1, 1]}[t])


def test_p_unsafe_is_the_full_vocabulary_softmax():
    import numpy as np

    row = np.array([0.5, -1.0, 2.0, 3.0])
    assert fmt.p_unsafe(row, 2) == pytest.approx(np.exp(2.0) / np.exp(row).sum())
