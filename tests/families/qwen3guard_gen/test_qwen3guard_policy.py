"""`--policy` with Qwen3Guard-Gen: the prompt lists the policy's categories (the authors' template
otherwise byte for byte), the parser accepts only its names, and a bad policy is a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.core.verdicts import RecordError
from guardcli.families.qwen3guard_gen import format as fmt

from ...conftest import invoke

MARKER = "zorblax"


@pytest.fixture(scope="module")
def qwen_tiny() -> Path:
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    return cached_tiny_qwen3guard()


def test_with_categories_replaces_only_the_list():
    messages = [{"role": "user", "content": "hello"}]
    plain = fmt.render(messages)
    custom = fmt.render(messages, categories=["Discount Codes.", "PII."])
    block = (
        "<BEGIN UNSAFE CONTENT CATEGORIES>\nDiscount Codes.\nPII.\n<END UNSAFE CONTENT CATEGORIES>"
    )
    assert block in custom
    start = plain.index("<BEGIN UNSAFE CONTENT CATEGORIES>")
    end = plain.index("<END UNSAFE CONTENT CATEGORIES>")
    assert (
        custom.replace(block, "")
        == plain[:start] + plain[end + len("<END UNSAFE CONTENT CATEGORIES>") :]
    )


def test_parse_takes_only_the_policy_names():
    names = frozenset({"Discount Codes"})
    found = fmt.parse("Safety: Unsafe\nCategories: Discount Codes", response=False, names=names)
    assert found.categories == ["Discount Codes"]
    with pytest.raises(RecordError, match="unknown prompt category 'Violent'"):
        fmt.parse("Safety: Unsafe\nCategories: Violent", response=False, names=names)


@pytest.mark.slow
def test_cli_policy_shows_and_fails_closed(runner, qwen_tiny, tmp_path):
    """The tiny model names Violent for the marker: excluded by the policy, that answer is an
    error record (flagged with --fail-closed), never a verdict."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("exclude: [Violent, Jailbreak]\n")
    base = ["classify", "-m", str(qwen_tiny), "--policy", str(policy), "--format", "jsonl"]
    shown = invoke(runner, [*base, "--show-input", "hello"])
    assert shown.exit_code == 0, shown.stderr
    text = json.loads(shown.stdout)["input"]
    assert "<BEGIN UNSAFE CONTENT CATEGORIES>\nNon-violent Illegal Acts.\n" in text
    assert "Violent.\n" not in text and "Jailbreak." not in text
    safe = invoke(runner, [*base, "How do I bake bread?"])
    assert safe.exit_code == 0 and json.loads(safe.stdout)["label"] == "safe"
    closed = invoke(runner, [*base, "--fail-closed", f"a {MARKER} lighthouse"])
    row = json.loads(closed.stdout)
    assert row["error"]["type"] == "model_output" and row["flagged"] is True
    assert closed.exit_code == 2  # an error outranks a flag


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("exclude: [S3]\n", "exclude: S3 not in the model's taxonomy"),
        ("categories:\n  - {code: C1, name: 'a, b'}\n", "has a comma"),
    ],
)
def test_cli_bad_policy_is_a_usage_error(runner, qwen_tiny, tmp_path, content, message):
    policy = tmp_path / "policy.yaml"
    policy.write_text(content)
    result = invoke(runner, ["classify", "-m", str(qwen_tiny), "--policy", str(policy), "hi"])
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and result.stdout == ""


def test_policy_does_not_apply_to_a_classifier(runner, tiny_model, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text("exclude: [S3]\n")
    result = invoke(
        runner,
        ["classify", "-m", str(tiny_model), "--variant", "fp32", "--policy", str(policy), "hi"],
    )
    assert result.exit_code == 2
    assert "policy (--policy) does not apply to the seqcls family" in result.stderr
