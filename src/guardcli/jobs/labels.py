"""Labels as people write them: 0/1, true/false, safe/unsafe, or category names judged by a
positive rule ("Hate Speech,CBRN", "!Benign")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TRUE_WORDS = frozenset({"1", "true", "yes", "unsafe", "positive", "flagged"})
FALSE_WORDS = frozenset({"0", "false", "no", "safe", "negative", "ok"})


# -- labels ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PositiveRule:
    """Which category names count as positive: "Hate Speech,CBRN" (these) or "!Benign" (all but)."""

    names: frozenset[str]
    negate: bool = False

    @classmethod
    def parse(cls, text: str) -> PositiveRule:
        negate = text.strip().startswith("!")
        body = text.strip()[1:] if negate else text
        names = frozenset(n.strip().casefold() for n in body.split(",") if n.strip())
        if not names:
            raise ValueError(f"--positive {text!r} names no category")
        return cls(names, negate)

    def __call__(self, name: str) -> bool:
        return (name.strip().casefold() in self.names) != self.negate


def parse_label(value: Any, rule: PositiveRule | None = None) -> bool:
    """A label -> positive or not. Raises ValueError saying why a value is not a label.

    0/1, true/false, "safe"/"unsafe" (and yes/no, positive/negative); a category name with a
    `rule`; a list of the categories that apply (positive when non-empty, or with a rule when
    any listed name is positive). With a rule, strings are always category names, so
    "Safe"/"Unsafe" severities can be matched by name too.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"label {value!r} is not 0 or 1")
    if isinstance(value, str):
        if rule is not None:
            return rule(value)
        word = value.strip().casefold()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(
            f"label {value!r} is not 0/1, true/false or safe/unsafe; "
            "pass --positive to say which category names are positive (e.g. '!Benign')"
        )
    if isinstance(value, list):
        # A list names the categories that apply: without a rule, any listed name is positive.
        if rule is None:
            return any(
                isinstance(v, str)
                and v.strip().casefold() not in FALSE_WORDS
                or not isinstance(v, str)
                and parse_label(v)
                for v in value
            )
        return any(parse_label(v, rule) for v in value)
    if value is None:
        raise ValueError("label is missing")
    raise ValueError(f"label of type {type(value).__name__} is not understood")


# -- counts at one threshold ----------------------------------------------------------------------
