"""`guard bench`'s optional columns: the verdict cache's (--duplicates) and the distance to this
machine's limit (share of the measured GEMM rate)."""

from __future__ import annotations

from typing import Any


def _num(value: Any) -> str:
    """Three significant figures or so: 1,234 / 56.7 / 0.89."""
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _delta(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def extra_headers(report: dict[str, Any]) -> list[str]:
    headers = []
    if "limits" in report:
        headers += ["GOP/s", "% of\nlimit"]
    if report["settings"].get("duplicates"):
        headers += ["no cache\nprompts/s", "cache\nprompts/s", "×cache", "hits", "same"]
    return headers


def extra_cells(report: dict[str, Any], row: dict[str, Any]) -> list[str]:
    cells = []
    if "limits" in report:
        share = row.get("share_of_limit")
        cells += [_num(row.get("achieved_gops")), "-" if share is None else f"{100 * share:.0f}%"]
    if report["settings"].get("duplicates"):
        speedup, hits = row.get("cache_speedup"), row.get("cache_hit_share")
        same = row.get("cache_identical")
        cells += [
            _num(row.get("no_cache_e2e_prompts_per_s")),
            _num(row.get("cache_e2e_prompts_per_s")),
            "-" if speedup is None else f"{speedup:.2f}×",
            "-" if hits is None else f"{100 * hits:.0f}%",
            "-" if same is None else ("yes" if same else "NO"),
        ]
    return cells


def extra_notes(report: dict[str, Any]) -> list[str]:
    share = report["settings"].get("duplicates")
    if not share:
        return []
    return [
        f"--duplicates {share:g}: {100 * share:.0f}% of the timed prompts repeat earlier ones; "
        "no cache/cache: e2e prompts/s on that stream without and with the verdict cache; "
        "same: verdicts byte-identical both ways."
    ]
