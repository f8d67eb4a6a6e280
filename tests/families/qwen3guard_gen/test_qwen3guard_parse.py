"""Qwen3Guard-Gen's answer parser is strict: every canonical answer reads as the authors' parsers
read it, and nothing else is ever a verdict (least of all "safe").

The oracle is the authors' parsing code, quoted from the Qwen3Guard README (Quick Start,
"Inference with Transformers"); canonical answers are built from the chat template's own
instructions ("The first line must be one of ...", "Categories: None", "Refusal: Yes|No").
"""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guardcli.core.verdicts import RecordError
from guardcli.families.qwen3guard_gen import format as fmt

from ...conftest import invoke

# ---------------------------------------------------------------------------- the authors' oracle


def extract_label_and_categories(content):
    """Quoted from the Qwen3Guard README (prompt moderation)."""
    safe_pattern = r"Safety: (Safe|Unsafe|Controversial)"
    category_pattern = r"(Violent|Non-violent Illegal Acts|Sexual Content or Sexual Acts|PII|Suicide & Self-Harm|Unethical Acts|Politically Sensitive Topics|Copyright Violation|Jailbreak|None)"  # noqa: E501
    safe_label_match = re.search(safe_pattern, content)
    label = safe_label_match.group(1) if safe_label_match else None
    categories = re.findall(category_pattern, content)
    return label, categories


def extract_label_categories_refusal(content):
    """Quoted from the Qwen3Guard README (response moderation)."""
    safe_pattern = r"Safety: (Safe|Unsafe|Controversial)"
    category_pattern = r"(Violent|Non-violent Illegal Acts|Sexual Content or Sexual Acts|PII|Suicide & Self-Harm|Unethical Acts|Politically Sensitive Topics|Copyright Violation|None)"  # noqa: E501
    refusal_pattern = r"Refusal: (Yes|No)"
    safe_label_match = re.search(safe_pattern, content)
    refusal_label_match = re.search(refusal_pattern, content)
    label = safe_label_match.group(1) if safe_label_match else None
    refusal_label = refusal_label_match.group(1) if refusal_label_match else None
    categories = re.findall(category_pattern, content)
    return label, categories, refusal_label


def reference(text: str, response: bool) -> tuple[str | None, list[str], bool | None]:
    """The authors' judgement in our vocabulary: 'None' is no category."""
    if response:
        label, categories, refusal = extract_label_categories_refusal(text)
        return (
            label,
            [c for c in categories if c != "None"],
            {"Yes": True, "No": False}.get(refusal),
        )
    label, categories = extract_label_and_categories(text)
    return label, [c for c in categories if c != "None"], None


# ---------------------------------------------------------------------------- canonical answers

# From the template's category lists (the prompt one ends with Jailbreak; responses have none).
PROMPT_NAMES = [
    "Violent",
    "Non-violent Illegal Acts",
    "Sexual Content or Sexual Acts",
    "PII",
    "Suicide & Self-Harm",
    "Unethical Acts",
    "Politically Sensitive Topics",
    "Copyright Violation",
    "Jailbreak",
]
RESPONSE_NAMES = PROMPT_NAMES[:-1]
LEVELS = ("Safe", "Unsafe", "Controversial")


def answer(severity: str, categories, refusal: str | None = None) -> str:
    text = f"Safety: {severity}\nCategories: {', '.join(categories) or 'None'}"
    return text if refusal is None else f"{text}\nRefusal: {refusal}"


def category_lists(names: list[str]):
    """Every subset in the template's order, and every ordered pair in both orders."""
    for k in range(len(names) + 1):
        yield from itertools.combinations(names, k)
    yield from itertools.permutations(names, 2)


def canonical(response: bool) -> list[str]:
    names = RESPONSE_NAMES if response else PROMPT_NAMES
    refusals: list[str | None] = ["Yes", "No"] if response else [None]
    out = []
    for refusal in refusals:
        out.append(answer("Safe", [], refusal))
        for severity in ("Unsafe", "Controversial"):
            out.extend(answer(severity, c, refusal) for c in category_lists(names))
    return sorted(set(out))


CANONICAL = {False: canonical(False), True: canonical(True)}
CANONICAL_SET = {r: set(v) for r, v in CANONICAL.items()}
_CAT = {
    r: "(?:" + "|".join(re.escape(n) for n in (RESPONSE_NAMES if r else PROMPT_NAMES)) + ")"
    for r in (False, True)
}


def is_canonical(text: str, response: bool) -> bool:
    """The grammar as one whole-string pattern (independent of `fmt.parse`): distinct names,
    and Safe only with None."""
    cat = _CAT[response]
    tail = r"\nRefusal: (?:Yes|No)" if response else ""
    m = re.fullmatch(
        rf"Safety: (Safe|Unsafe|Controversial)\nCategories: (None|{cat}(?:, {cat})*){tail}", text
    )
    if m is None:
        return False
    names = m.group(2).split(", ")
    if len(set(names)) != len(names):
        return False
    return not (m.group(1) == "Safe" and names != ["None"])


def judged(text: str, response: bool):
    """(severity, categories, refusal), or the RecordError; anything else raised fails."""
    try:
        found = fmt.parse(text, response=response, line=3)
    except RecordError as err:
        assert err.type == "model_output" and err.raw == text and err.line == 3
        return err
    return found.severity, found.categories, found.refusal


# ---------------------------------------------------------------------------- canonical = reference


@pytest.mark.parametrize("response", [False, True], ids=["prompt", "response"])
def test_every_canonical_answer_reads_as_the_authors_read_it(response):
    texts = CANONICAL[response]
    # Safe + None, or Unsafe/Controversial x (every subset + the reversed pairs) [x Yes/No].
    assert len(texts) == (1 + 2 * (2**9 + 36) if not response else 2 * (1 + 2 * (2**8 + 28)))
    for text in texts:
        assert is_canonical(text, response)
        got = judged(text, response)
        assert not isinstance(got, RecordError), (text, got)
        assert got == reference(text, response), text


def test_the_readme_examples():
    assert judged("Safety: Unsafe\nCategories: Violent", False) == ("Unsafe", ["Violent"], None)
    assert judged("Safety: Safe\nCategories: None\nRefusal: Yes", True) == ("Safe", [], True)


# ---------------------------------------------------------------------------- the issue's defects

DEFECTS = [
    ("Safety: Safe\nSafety: Unsafe", "'Safety:' appears 2 times"),
    ("Safety: Safe\nCategories: Violent", "'Safety: Safe' with harm categories (Violent)"),
    ("Safety: Safeguarding required", "line 1 must be 'Safety: Safe|Unsafe|Controversial'"),
    ("NotSafety: Safe", "line 1 must be 'Safety: Safe|Unsafe|Controversial'"),
    ("The user wrote 'Safety: Safe'. Safety: Unsafe", "'Safety:' appears 2 times"),
]


@pytest.mark.parametrize(("text", "reason"), DEFECTS)
def test_the_issues_defect_strings_are_model_output_errors(text, reason):
    # The authors' patterns read every one of these as a judgement; the first four as Safe.
    assert reference(text, False)[0] in ("Safe", "Unsafe")
    for response in (False, True):
        with pytest.raises(RecordError) as err:
            fmt.parse(text, response=response, line=5)
        assert err.value.to_dict() == {
            "type": "model_output",
            "message": err.value.message,
            "line": 5,
            "raw": text,
        }
        assert err.value.message.startswith("model output is not in Qwen3Guard's answer format: ")
        if not response or "line 1" in reason or "appears" in reason:
            assert reason in err.value.message


@pytest.mark.parametrize(
    ("text", "response", "reason"),
    [
        ("Safety: Unsafe\nCategories: Violent\n", False, "leading or trailing whitespace"),
        (" Safety: Unsafe\nCategories: Violent", False, "leading or trailing whitespace"),
        ("Safety: Unsafe\r\nCategories: Violent", False, "line 1 must be"),
        ("Safety: Unsafe", False, "1 line(s); prompt moderation answers in exactly 2"),
        ("Safety: Unsafe\nCategories: Violent", True, "2 line(s); response moderation"),
        ("Safety: Unsafe\nCategories: Jailbreak\nRefusal: No", True, "unknown response category"),
        ("Safety: Unsafe\nCategories: Violent,PII", False, "unknown prompt category 'Violent,PII'"),
        ("Safety: Unsafe\nCategories: Violent, Violent", False, "'Violent' listed twice"),
        ("Safety: Unsafe\nCategories: None, PII", False, "'None' together with categories"),
        ("Safety: Unsafe\nCategories: , PII", False, "unknown prompt category ''"),
        ("Safety: unsafe\nCategories: None", False, "line 1 must be"),
        ("Safety: Unsafe\nCategory: PII", False, "line 2 must start with 'Categories: '"),
        ("Safety: Safe\nCategories: None\nRefusal: Maybe", True, "line 3 must be 'Refusal:"),
        ("Safety: Safe\nCategories: None\nRefusal: No", False, "3 line(s)"),
    ],
)
def test_what_was_wrong_is_named(text, response, reason):
    with pytest.raises(RecordError) as err:
        fmt.parse(text, response=response)
    assert reason in err.value.message and err.value.raw == text


# ---------------------------------------------------------------------------- property + fuzz

PIECES = [
    "Safety: ",
    "Safety:",
    "Safe",
    "Unsafe",
    "Controversial",
    "\n",
    "Categories: ",
    "None",
    ", ",
    ",",
    "Refusal: ",
    "Yes",
    "No",
    " ",
    "'",
    "Not",
    *PROMPT_NAMES,
]


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=3)), max_size=12),
    st.booleans(),
)
def test_no_non_canonical_text_is_ever_a_verdict(parts, response):
    text = "".join(parts)
    got = judged(text, response)
    if is_canonical(text, response):
        assert got == reference(text, response)
    else:
        assert isinstance(got, RecordError), (text, got)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(CANONICAL[False] + CANONICAL[True]), st.text(min_size=1, max_size=8))
def test_anything_added_to_a_canonical_answer_is_an_error(text, extra):
    response = text.count("\n") == 2
    for changed in (extra + text, text + extra):
        if not is_canonical(changed, response):
            assert isinstance(judged(changed, response), RecordError)


def _mutate(text: str, rng: random.Random, response: bool) -> str:
    lines = text.split("\n")
    names = RESPONSE_NAMES if response else PROMPT_NAMES
    kind = rng.randrange(12)
    i = rng.randrange(len(lines))
    if kind == 0:  # insert a line
        lines.insert(
            rng.randrange(len(lines) + 1),
            rng.choice(["Safety: Unsafe", "Safety: Safe", "Categories: None", "", "ok"]),
        )
    elif kind == 1:  # delete a line
        del lines[i]
    elif kind == 2:  # duplicate a line
        lines.insert(i, lines[i])
    elif kind == 3:  # change case
        lines[i] = rng.choice([str.lower, str.upper, str.swapcase, str.title])(lines[i])
    elif kind == 4:  # a prefix on the Safety line
        lines[0] = rng.choice(["Not", "Is", "The ", "- ", "**", "Un"]) + lines[0]
    elif kind == 5:  # a quoted Safety line before the answer
        quote = f"The user wrote 'Safety: {rng.choice(LEVELS)}'. "
        lines[0] = quote + lines[0] if rng.random() < 0.5 else lines[0] + " " + quote
    elif kind == 6 and len(lines) > 1:  # an extra (maybe unknown, maybe repeated) category
        extra = rng.choice([*names, "Jailbreak", "None", "Spam", "violent"])
        lines[1] += rng.choice([", ", ",", " "]) + extra
    elif kind == 7:  # a suffix on the label
        j = rng.randrange(len(lines))
        lines[j] += rng.choice(["guarding required", "ty", ".", " (likely)", "!", "ly"])
    elif kind == 8:  # whitespace around or inside
        lines[i] = rng.choice([" ", "\t", "  "]) + lines[i] + rng.choice(["", " ", "\r"])
    elif kind == 9:  # swap two lines
        j = rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 10:  # relabel: a different severity or refusal, which may still be canonical
        lines[0] = f"Safety: {rng.choice(LEVELS)}"
        if response and len(lines) > 2:
            lines[2] = f"Refusal: {rng.choice(['Yes', 'No'])}"
    else:  # truncate (max_new_tokens) or run on past the answer
        joined = "\n".join(lines)
        cut = rng.randrange(len(joined) + 1)
        return joined[:cut] if rng.random() < 0.5 else joined + rng.choice(["\n", "\nok", " ."])
    return "\n".join(lines)


def fuzz(n: int = 20_000, seed: int = 20251) -> dict[str, int]:
    rng = random.Random(seed)
    counts = dict.fromkeys(
        ("total", "canonical", "non_canonical", "non_canonical_safe", "non_canonical_verdict"), 0
    )
    for _ in range(n):
        response = rng.random() < 0.5
        text = rng.choice(CANONICAL[response])
        for _ in range(rng.randint(1, 3)):
            text = _mutate(text, rng, response)
        got = judged(text, response)
        counts["total"] += 1
        if is_canonical(text, response):
            counts["canonical"] += 1
            assert got == reference(text, response), text
            continue
        counts["non_canonical"] += 1
        if not isinstance(got, RecordError):
            counts["non_canonical_verdict"] += 1
            counts["non_canonical_safe"] += got[0] == "Safe"
    return counts


def test_seeded_fuzz_of_20000_mutated_answers():
    counts = fuzz()
    print(
        f"\nqwen3guard parse fuzz: {counts['total']} mutated outputs, {counts['canonical']} "
        f"canonical, {counts['non_canonical']} non-canonical, {counts['non_canonical_safe']} "
        "non-canonical reported Safe"
    )
    assert counts["total"] == 20_000
    assert counts["canonical"] > 0 and counts["non_canonical"] > 10_000
    assert counts["non_canonical_safe"] == 0
    assert counts["non_canonical_verdict"] == 0


# ---------------------------------------------------------------------------- through the CLI


@pytest.mark.slow
@pytest.mark.parametrize("text", [t for t, _ in DEFECTS])
def test_remote_non_canonical_answer_is_a_model_output_record(runner, text):
    from ...families.qwen3guard_gen.test_qwen3guard import _Server

    with _Server(garbage=True) as server:
        server.garbage_text = text
        result = invoke(
            runner,
            ["classify", "-m", "qwen3guard-gen", "--endpoint", server.url, "-q", "hi"],
        )
    row = json.loads(result.stdout)
    assert result.exit_code == 2, result.stderr
    assert row["flagged"] is None and row["error"]["type"] == "model_output"
    assert row["error"]["raw"] == text


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_local_generation_that_is_not_canonical_is_a_model_output_record(
    runner, monkeypatch, backend
):
    """The tiny Qwen3Guard-Gen, its generation replaced by the tokens of an ambiguous answer:
    decoded, parsed, and reported as an error record (flagged under --fail-closed)."""
    from guardcli.core.tokenize import TextTokenizer
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard
    from guardcli.runtime import causal_lm

    model = cached_tiny_qwen3guard()
    text = "Safety: Safe\nCategories: Violent"
    ids = TextTokenizer(model, 64).tokenizer.encode(text, add_special_tokens=False).ids
    cls = causal_lm.OnnxCausalLM if backend == "onnx" else causal_lm.TorchCausalLM
    monkeypatch.setattr(cls, "generate", lambda self, prompts, n: [list(ids) for _ in prompts])
    args = ["classify", "-m", str(model), "--backend", backend, "--no-score", "-q"]
    result = invoke(runner, [*args, "a lighthouse"])
    row = json.loads(result.stdout)
    assert result.exit_code == 2, result.stderr
    assert row["flagged"] is None and row["error"]["type"] == "model_output"
    assert row["error"]["raw"] == text
    assert "'Safety: Safe' with harm categories (Violent)" in row["error"]["message"]
    closed = invoke(runner, [*args, "--fail-closed", "a lighthouse"])
    assert json.loads(closed.stdout)["flagged"] is True
