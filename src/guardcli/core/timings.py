"""Where a cold start's wall time goes: imports, session load, inference.

Code along the path calls `record(stage, seconds)`; `guard classify --timings` (or GUARD_TIMING=1)
prints the stages on stderr. Recording is a dict update, so it is always on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_STAGES: dict[str, float] = {}


def record(stage: str, seconds: float) -> None:
    _STAGES[stage] = _STAGES.get(stage, 0.0) + seconds


def stages() -> dict[str, float]:
    return dict(_STAGES)


def reset() -> None:
    _STAGES.clear()


def wanted() -> bool:
    return os.environ.get("GUARD_TIMING", "").strip().lower() in {"1", "true", "yes", "on"}


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), so interpreter start-up counts too."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class Clock:
    """Wall time of a whole command from its start, for the report's total."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.before = process_age()  # interpreter and imports before the command ran

    def lines(self) -> list[str]:
        total = time.perf_counter() - self.start + (self.before or 0.0)
        parts = []
        if self.before is not None:
            parts.append(f"start-up and imports {self.before:.3f}s")
        parts += [f"{name} {secs:.3f}s" for name, secs in _STAGES.items()]
        return [f"timings: {', '.join(parts)}; total {total:.3f}s"]
