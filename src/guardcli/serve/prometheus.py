"""Counters and histograms in Prometheus' text exposition format (0.0.4), without a client
library: the server needs a handful of series, not a dependency."""

from __future__ import annotations

import threading
from collections.abc import Sequence

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

Labels = tuple[tuple[str, str], ...]
INF = 'le="+Inf"'


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
    def __init__(self, prefix: str = "guard"):
        self.prefix = prefix
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._hists: dict[str, tuple[Sequence[float], dict[Labels, list[float]]]] = {}
        self._help: dict[str, str] = {}

    def describe(self, name: str, help: str) -> None:
        self._help[name] = help

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[tuple(sorted(labels.items()))] = value

    def observe(self, name: str, value: float, buckets: Sequence[float], **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            _, series = self._hists.setdefault(name, (buckets, {}))
            # per bucket counts, then sum, then count
            row = series.setdefault(key, [0.0] * (len(buckets) + 2))
            for i, bound in enumerate(buckets):
                if value <= bound:
                    row[i] += 1
            row[-2] += value
            row[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 when never set), for tests and logs."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            for table in (self._counters, self._gauges):
                if name in table:
                    return table[name].get(key, 0.0)
        return 0.0

    def render(self) -> str:
        lines: list[str] = []
        p = self.prefix
        with self._lock:
            for kind, table in (("counter", self._counters), ("gauge", self._gauges)):
                for name, series in sorted(table.items()):
                    full = f"{p}_{name}"
                    if name in self._help:
                        lines.append(f"# HELP {full} {self._help[name]}")
                    lines.append(f"# TYPE {full} {kind}")
                    for key, value in sorted(series.items()):
                        lines.append(f"{full}{_labels(key)} {_number(value)}")
            for name, (buckets, hist) in sorted(self._hists.items()):
                full = f"{p}_{name}"
                if name in self._help:
                    lines.append(f"# HELP {full} {self._help[name]}")
                lines.append(f"# TYPE {full} histogram")
                for key, row in sorted(hist.items()):
                    for bound, count in zip(buckets, row, strict=False):
                        le = f'le="{_number(bound)}"'
                        lines.append(f"{full}_bucket{_labels(key, le)} {_number(count)}")
                    lines.append(f"{full}_bucket{_labels(key, INF)} {_number(row[-1])}")
                    lines.append(f"{full}_sum{_labels(key)} {_number(row[-2])}")
                    lines.append(f"{full}_count{_labels(key)} {_number(row[-1])}")
        return "\n".join(lines) + "\n"
