"""`--policy FILE`: YAML and TOML read the same, and every mistake is an input error naming the
field, caught when the file is read or when it meets the model's taxonomy."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.policy import Category, Policy, parse_policy, read_policy

OWN = (Category("S1", "Violent Crimes"), Category("S2", "Non-Violent Crimes"), Category("S3", "X"))

YAML = """\
categories:
  - code: C1
    name: Discount Codes
    description: Sharing unreleased store discount codes.
  - code: C2
    name: Competitor Talk
exclude: [C2]
"""
TOML = """\
exclude = ["C2"]

[[categories]]
code = "C1"
name = "Discount Codes"
description = "Sharing unreleased store discount codes."

[[categories]]
code = "C2"
name = "Competitor Talk"
"""


def test_yaml_and_toml_read_the_same(tmp_path: Path):
    (tmp_path / "p.yaml").write_text(YAML)
    (tmp_path / "p.toml").write_text(TOML)
    a, b = read_policy(tmp_path / "p.yaml"), read_policy(tmp_path / "p.toml")
    assert (a.categories, a.exclude) == (b.categories, b.exclude)
    assert a.apply(OWN) == (
        Category("C1", "Discount Codes", "Sharing unreleased store discount codes."),
    )


def test_exclude_drops_from_the_models_own_in_order():
    assert Policy(exclude=("S2",)).apply(OWN) == (OWN[0], OWN[2])
    assert Policy().apply(OWN) == OWN


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "must hold a mapping"),
        ({"categories": [{"code": "C1", "name": "A"}], "rules": 1}, "unknown key(s) rules"),
        ({}, "names neither categories nor exclude"),
        ({"categories": []}, "categories must be a non-empty list"),
        ({"categories": "C1"}, "categories must be a non-empty list"),
        ({"categories": ["C1"]}, "categories[1] must be a mapping"),
        ({"categories": [{"code": "C1", "name": "A", "level": 2}]}, "categories[1]: unknown key"),
        ({"categories": [{"name": "A"}]}, "categories[1].code must be a non-empty string"),
        ({"categories": [{"code": "C 1", "name": "A"}]}, "categories[1].code 'C 1' must be one"),
        ({"categories": [{"code": "C1,C2", "name": "A"}]}, "must be one word"),
        ({"categories": [{"code": "C1"}]}, "categories[1].name must be a non-empty string"),
        ({"categories": [{"code": "C1", "name": "a\nb"}]}, "categories[1].name must be one line"),
        (
            {"categories": [{"code": "C1", "name": "A"}, {"code": "C1", "name": "B"}]},
            "categories[2].code 'C1' is a duplicate",
        ),
        ({"exclude": "S3"}, "exclude must be a list"),
        ({"exclude": ["S3", "S3"]}, "exclude lists a code twice"),
    ],
)
def test_bad_policies_name_the_field(data, message):
    with pytest.raises(GuardError) as err:
        parse_policy(data, "p.yaml")
    assert err.value.code == ExitCode.INPUT
    assert err.value.message.startswith("--policy p.yaml: ")
    assert message in err.value.message


def test_exclude_of_an_unknown_code_and_of_everything():
    with pytest.raises(GuardError, match=r"exclude: S9 not in the model's taxonomy \(S1, S2, S3\)"):
        Policy(exclude=("S9",), source="p.yaml").apply(OWN)
    mine = parse_policy({"categories": [{"code": "C1", "name": "A"}], "exclude": ["S1"]})
    with pytest.raises(GuardError, match=r"S1 not in its categories \(C1\)"):
        mine.apply(OWN)
    with pytest.raises(GuardError, match="leaves no category"):
        Policy(exclude=("S1", "S2", "S3")).apply(OWN)


def test_unreadable_files(tmp_path: Path):
    with pytest.raises(GuardError, match="cannot read it") as err:
        read_policy(tmp_path / "missing.yaml")
    assert err.value.code == ExitCode.INPUT
    (tmp_path / "bad.yaml").write_text("categories: [\n")
    with pytest.raises(GuardError, match="not valid YAML"):
        read_policy(tmp_path / "bad.yaml")
    (tmp_path / "bad.toml").write_text("categories = \n")
    with pytest.raises(GuardError, match="not valid TOML"):
        read_policy(tmp_path / "bad.toml")
    (tmp_path / "latin.yaml").write_bytes(b"exclude: [\xff]\n")
    with pytest.raises(GuardError, match="not UTF-8"):
        read_policy(tmp_path / "latin.yaml")
