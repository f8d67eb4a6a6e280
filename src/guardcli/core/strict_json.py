"""JSON text that every reader accepts: no NaN or Infinity, and always encodable as UTF-8.

`json.dumps` writes `NaN` (not JSON) unless told otherwise, and with `ensure_ascii=False` copies a
lone surrogate (from an input escape such as "\\ud800") into the text, where it cannot be encoded
as UTF-8. Every JSON writer outside the server goes through `dumps`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# Lone surrogates (not encodable as UTF-8), and the line breaks JSON leaves raw but
# str.splitlines and JavaScript split on (NEL, LINE/PARAGRAPH SEPARATOR): one record, one line.
_SURROGATE = re.compile("[\ud800-\udfff\x85\u2028\u2029]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def dumps(
    obj: Any, *, indent: int | None = None, ascii_only: bool = False, null_non_finite: bool = False
) -> str:
    """Strict JSON text. Raises ValueError for NaN or infinity anywhere in `obj`, or with
    `null_non_finite` (reports, where a metric can be undefined) writes them as null.

    A lone surrogate (or U+0085, U+2028, U+2029) can only stand inside a JSON string, so writing
    it as its `\\uXXXX` escape keeps the text valid JSON that reads back to the same string."""
    if null_non_finite:
        obj = _null_non_finite(obj)
    text = json.dumps(obj, ensure_ascii=ascii_only, allow_nan=False, indent=indent)
    return _SURROGATE.sub(_escape, text)


def _null_non_finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _null_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_null_non_finite(v) for v in obj]
    return obj


def reject_constant(name: str) -> Any:
    """`json.loads(parse_constant=...)`: NaN, Infinity and -Infinity are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def printable(value: Any) -> Any:
    """A string with its lone surrogates written as `\\uXXXX` (for CSV cells and tables, which
    are written as UTF-8); anything else unchanged."""
    return _SURROGATE.sub(_escape, value) if isinstance(value, str) else value
