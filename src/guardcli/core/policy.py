"""Your own policy for a generative guard (`--policy FILE`): the taxonomy its prompt lists.

A YAML file (TOML with the same keys is read too, by its .toml suffix):

    categories:            # replaces the model's taxonomy, in this order
      - code: C1
        name: Discount Codes
        description: Sharing unreleased store discount codes.
    exclude: [S3]          # drops categories (from the model's own, or from `categories`)

Everything is checked when the file is read (unknown keys, duplicate codes, an empty list) or
when it meets the model's taxonomy (an excluded code the taxonomy lacks): an input error naming
the field. A policy far from the taxonomy the model was trained on is outside what it was trained
for; measure it on labelled data (`guard sweep`, `guard compare`) before relying on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.errors import ExitCode, GuardError

POLICY_KEYS = ("categories", "exclude")
CATEGORY_KEYS = ("code", "name", "description")
# A code is one word (the model answers "unsafe\nC1,C2"): a letter, then letters, digits, _ or -.
CODE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
POLICY_HINT = (
    "A policy file holds `categories: [{code, name, description}]` and/or `exclude: [CODE]`; "
    "see docs/llama-guard.md."
)


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    description: str | None = None


@dataclass(frozen=True)
class Policy:
    """`categories` (None: the model's own) less the codes in `exclude`."""

    categories: tuple[Category, ...] | None = None
    exclude: tuple[str, ...] = ()
    source: str = "policy"

    def apply(self, taxonomy: Sequence[Category]) -> tuple[Category, ...]:
        """The categories the prompt lists: this policy's (or `taxonomy`), less `exclude`."""
        base = tuple(self.categories) if self.categories is not None else tuple(taxonomy)
        known = {c.code for c in base}
        unknown = [code for code in self.exclude if code not in known]
        if unknown:
            where = "its categories" if self.categories is not None else "the model's taxonomy"
            raise _bad(
                self.source,
                f"exclude: {', '.join(unknown)} not in {where} "
                f"({', '.join(c.code for c in base)}).",
            )
        kept = tuple(c for c in base if c.code not in self.exclude)
        if not kept:
            raise _bad(self.source, "exclude: leaves no category to judge against.")
        return kept


def _bad(source: str, message: str) -> GuardError:
    return GuardError(f"--policy {source}: {message}", hint=POLICY_HINT, code=ExitCode.INPUT)


def _text(value: Any, field: str, source: str, *, one_line: bool = True) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(source, f"{field} must be a non-empty string.")
    value = value.strip()
    if one_line and "\n" in value:
        raise _bad(source, f"{field} must be one line.")
    return value


def parse_policy(data: Any, source: str = "policy") -> Policy:
    """A policy from parsed YAML/TOML data (see the module doc); input errors name the field."""
    if not isinstance(data, Mapping):
        raise _bad(source, "the file must hold a mapping with categories and/or exclude.")
    unknown = sorted(set(data) - set(POLICY_KEYS))
    if unknown:
        raise _bad(source, f"unknown key(s) {', '.join(map(str, unknown))}.")
    if not any(k in data for k in POLICY_KEYS):
        raise _bad(source, "it names neither categories nor exclude.")
    categories: tuple[Category, ...] | None = None
    if "categories" in data:
        items = data["categories"]
        if not isinstance(items, list) or not items:
            raise _bad(source, "categories must be a non-empty list.")
        seen: set[str] = set()
        found = []
        for i, item in enumerate(items, start=1):
            where = f"categories[{i}]"
            if not isinstance(item, Mapping):
                raise _bad(source, f"{where} must be a mapping with code, name, description.")
            extra = sorted(set(item) - set(CATEGORY_KEYS))
            if extra:
                raise _bad(source, f"{where}: unknown key(s) {', '.join(map(str, extra))}.")
            code = _text(item.get("code"), f"{where}.code", source)
            if not CODE.fullmatch(code):
                raise _bad(
                    source,
                    f"{where}.code {code!r} must be one word: a letter, then letters, digits, "
                    "_ or - (32 at most).",
                )
            if code in seen:
                raise _bad(source, f"{where}.code {code!r} is a duplicate.")
            seen.add(code)
            name = _text(item.get("name"), f"{where}.name", source)
            description = None
            if item.get("description") is not None:
                description = _text(
                    item["description"], f"{where}.description", source, one_line=False
                )
            found.append(Category(code, name, description))
        categories = tuple(found)
    exclude: tuple[str, ...] = ()
    if "exclude" in data:
        value = data["exclude"]
        if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
            raise _bad(source, "exclude must be a list of category codes.")
        if len(set(value)) != len(value):
            raise _bad(source, "exclude lists a code twice.")
        exclude = tuple(value)
    return Policy(categories, exclude, source)


def read_policy(path: str | Path) -> Policy:
    """The policy in a YAML file (or a .toml file with the same keys)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise GuardError(
            f"--policy {source}: cannot read it ({exc.strerror}).", code=ExitCode.INPUT
        ) from None
    except UnicodeDecodeError:
        raise _bad(source, "it is not UTF-8 text.") from None
    if path.suffix.lower() == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _bad(source, f"not valid TOML: {exc}.") from None
    else:
        try:
            import yaml
        except ImportError as exc:
            from guardcli.core.errors import missing_extra

            raise missing_extra("pipeline", "Reading a YAML policy (PyYAML)") from exc
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _bad(source, f"not valid YAML: {exc}") from None
    return parse_policy(data, source)


def as_policy(value: Policy | str | Path | Mapping[str, Any] | None) -> Policy | None:
    """A family's `policy` option: a Policy, a file path, or the parsed mapping."""
    if value is None or isinstance(value, Policy):
        return value
    if isinstance(value, Mapping):
        return parse_policy(value)
    return read_policy(value)
