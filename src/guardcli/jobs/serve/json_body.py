"""Request bodies in, response bodies out: strict JSON both ways.

In: a body is UTF-8 JSON without NaN/Infinity literals, nested at most MAX_DEPTH deep, whose
strings are all valid Unicode (no lone surrogates, which no tokenizer can read and no UTF-8
response can echo). Anything else is a `BadBody` (HTTP 400), never a 500.
Out: NaN and infinity are refused (`allow_nan=False`) and the bytes are strict UTF-8, so every
answer parses in every JSON client.
"""

from __future__ import annotations

import json
from typing import Any

# Far deeper than any protocol we speak; deep enough for records carrying their own JSON.
MAX_DEPTH = 64


class BadBody(ValueError):
    """The body is not JSON this service can read (answered with HTTP 400)."""


def _no_constants(name: str) -> Any:
    raise BadBody(f"the body is not strict JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadBody(f"the body holds a number too large for a float: {text[:40]}")
    return value


def _check(value: Any) -> None:
    """Depth and string checks, without recursion (a deep body must not recurse here)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _valid_text(item)
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > MAX_DEPTH:
            raise BadBody(f"the body is nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            for key, child in item.items():
                _valid_text(key)
                stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in item)


def _valid_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody(
            "the body holds a string with a lone surrogate (\\ud800-\\udfff escape): "
            "it is not valid Unicode"
        ) from None


def parse_body(data: bytes) -> Any:
    """The JSON value of a request body, or BadBody saying what is wrong with it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody(f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise BadBody(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise BadBody(f"the body is nested more than {MAX_DEPTH} levels deep") from None
    except BadBody:
        raise
    except ValueError as exc:  # e.g. an integer over Python's 4,300-digit limit
        raise BadBody(f"the body is not JSON this service can read: {exc}") from None
    _check(value)
    return value


def dumps(content: Any) -> bytes:
    """A response body: compact, strict JSON (ValueError on NaN/inf), strict UTF-8."""
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )
