"""Per-category threshold files: OpenCC's calibrated sidecars and `guard sweep --write-thresholds`.

Two shapes are accepted, because the sidecar's exact shape is not documented: a flat
`{category: threshold}` object (what `guard sweep --write-thresholds` writes) and a
`{"thresholds": {category: threshold}}` wrapper. Anything else is rejected by name.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from guardcli.core.errors import ExitCode, GuardError

# BELLS-O (the OpenCC paper's benchmark) names one category differently from the taxonomy.
CATEGORY_ALIASES = {"integrity & quality violations": "Information Integrity"}

SHAPE_HINT = (
    'A thresholds file is a JSON object {"Category": 0.42, ...} (as `guard sweep '
    '--write-thresholds` writes) or {"thresholds": {"Category": 0.42, ...}}.'
)


def canonical_category(name: str, known: list[str] | tuple[str, ...] | None = None) -> str:
    """The taxonomy's spelling of `name` (case-insensitive; BELLS-O aliases mapped)."""
    key = name.strip().casefold()
    name = CATEGORY_ALIASES.get(key, name.strip())
    for candidate in known or ():
        if candidate.casefold() == name.casefold():
            return candidate
    return name


THRESHOLD_HINT = (
    "A threshold is a probability in [0, 1]: flag when score >= it (e.g. 0.984, not 98.4)."
)


def parse_threshold(value: Any, where: str, code: ExitCode = ExitCode.INPUT) -> float:
    """The one threshold parser: an option's text, a TOML value or a JSON number -> a finite
    float in [0, 1], else a GuardError naming `where`. NaN, inf, 1.5 and -1 are refused: NaN or
    anything above 1 would flag nothing, anything below 0 everything."""
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise GuardError(
                f"{where} must be a number in [0, 1], not {value!r}.",
                hint=THRESHOLD_HINT,
                code=code,
            ) from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            number = math.inf
    else:
        raise GuardError(
            f"{where} must be a number in [0, 1], not {json.dumps(value, default=repr)}.",
            hint=THRESHOLD_HINT,
            code=code,
        )
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise GuardError(f"{where} is {value}, outside [0, 1].", hint=THRESHOLD_HINT, code=code)
    return number


def parse_thresholds(data: Any, where: str, code: ExitCode = ExitCode.INPUT) -> dict[str, float]:
    """A flat {label: float} mapping from either accepted shape."""
    if isinstance(data, dict) and set(data) == {"thresholds"}:
        data = data["thresholds"]
    if not isinstance(data, dict) or not data:
        raise GuardError(f"{where} is not a thresholds object.", hint=SHAPE_HINT, code=code)
    out: dict[str, float] = {}
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise GuardError(
                f"{where}: the threshold of {name!r} is {json.dumps(value)}, not a number.",
                hint=SHAPE_HINT,
                code=code,
            )
        out[str(name)] = parse_threshold(value, f"{where}: the threshold of {name!r}", code)
    return out


def read_thresholds(path: str | Path, code: ExitCode = ExitCode.INPUT) -> dict[str, float]:
    """Read a thresholds file (either shape)."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GuardError(f"Cannot read {path}: {exc.strerror}.", code=code) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GuardError(
            f"{path} is not valid JSON: {exc.msg}.", hint=SHAPE_HINT, code=code
        ) from None
    return parse_thresholds(data, str(path), code)


def apply_thresholds(
    base: dict[str, float], override: dict[str, float], categories: list[str], where: str
) -> dict[str, float]:
    """`base` with `override` on top, names mapped to the taxonomy; unknown names rejected."""
    out = dict(base)
    for name, value in override.items():
        canon = canonical_category(name, categories)
        if canon not in categories:
            raise GuardError(
                f"{where}: unknown category {name!r}.",
                hint=f"The model's categories: {', '.join(categories)}.",
                code=ExitCode.INPUT,
            )
        out[canon] = value
    return out
