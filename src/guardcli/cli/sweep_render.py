"""A sweep report for people: number formatting, a small terminal PR curve and a PNG
(matplotlib). The rich tables are drawn in cli/_reports.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardcli.core.errors import missing_extra

SPARKS = "▁▂▃▄▅▆▇█"
MARKS = {"at_threshold": "T", "best_f1": "F", "pick": "P"}


def fmt_value(value: Any, digits: int = 4) -> str:
    """A number for a table cell: floats to `digits` places, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def sparkline(values: list[float | None]) -> str:
    """One character per value, ▁ (lowest) to █ (highest); a space where a value is missing."""
    known = [v for v in values if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo or 1.0
    return "".join(
        " " if v is None else SPARKS[round((v - lo) / span * (len(SPARKS) - 1))] for v in values
    )


def f1_by_threshold(curve: list[dict[str, Any]], bins: int = 40) -> list[float | None]:
    """F1 when flagging at each of `bins` thresholds from 0 to 1 (from the curve's steps)."""
    out: list[float | None] = []
    ascending = sorted(curve, key=lambda r: r["threshold"])
    for b in range(bins):
        t = b / (bins - 1)
        # The lowest curve threshold >= t flags exactly the records with score >= t.
        row = next((r for r in ascending if r["threshold"] >= t), None)
        if row is None:  # nothing flagged: F1 is 0 when there are positives to miss
            out.append(0.0 if curve and curve[0]["recall"] is not None else None)
        else:
            out.append(row["f1"])
    return out


def ascii_pr_curve(
    curve: list[dict[str, Any]], marks: dict[str, dict[str, Any]], width: int = 48, height: int = 10
) -> list[str]:
    """Precision (up) against recall (right) in characters; marked points drawn as letters."""
    pts = [(r["recall"], r["precision"]) for r in curve if r["recall"] is not None]
    if not pts:
        return []
    low = min(p for _, p in pts)
    bottom = min(0.9, int(low * 10) / 10)  # zoom in on high precision, keep a 0.1 grid
    grid = [[" "] * width for _ in range(height)]

    def cell(recall: float, precision: float) -> tuple[int, int]:
        x = min(width - 1, round(recall * (width - 1)))
        y = (precision - bottom) / (1 - bottom) if bottom < 1 else 1.0
        return height - 1 - min(height - 1, max(0, round(y * (height - 1)))), x

    for recall, precision in pts:
        row, col = cell(recall, precision)
        grid[row][col] = "•"
    for name, point in marks.items():
        if point and point.get("recall") is not None and point.get("precision") is not None:
            row, col = cell(point["recall"], point["precision"])
            grid[row][col] = MARKS[name]
    lines = []
    for i, row_cells in enumerate(grid):
        label = 1 - i * (1 - bottom) / (height - 1)
        axis = f"{label:4.2f} ┤" if i in (0, height - 1) else "     │"
        lines.append(axis + "".join(row_cells))
    lines.append("     └" + "─" * width)
    lines.append("      0" + " " * (width - 12) + "recall 1")
    return lines


def plot(
    report: dict[str, Any], curves: dict[str, list[dict[str, Any]]], path: Path, title: str = ""
) -> None:
    """PR and ROC curves side by side, operating points marked, written to `path`."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise missing_extra("plot", "--plot") from None
    fig, (pr, roc) = plt.subplots(1, 2, figsize=(11, 4.8))
    for name, rows in curves.items():
        if not rows or (name and name not in report.get("categories", {})):
            continue
        label = name or "all"
        width, alpha = (2.0, 1.0) if not name else (1.0, 0.6)
        recall = [0.0] + [r["recall"] or 0.0 for r in rows]
        precision = [1.0] + [r["precision"] for r in rows]
        pr.step(recall, precision, where="pre", label=label, linewidth=width, alpha=alpha)
        if rows[0]["fpr"] is not None and rows[0]["recall"] is not None:
            fpr = [0.0] + [r["fpr"] for r in rows]
            roc.plot(fpr, recall, label=label, linewidth=width, alpha=alpha)
    points = dict(report["operating_points"])
    points["at_threshold"] = {**report["at_threshold"], "rule": "threshold"}
    for i, (name, p) in enumerate(points.items()):
        if not p or p.get("recall") is None:
            continue
        text = f"{name.replace('_', '-')} {p['threshold']:.4g}"
        color = f"C{(i + 3) % 10}"
        pr.scatter([p["recall"]], [p["precision"]], zorder=5, color=color, label=text)
        if p.get("fpr") is not None:
            roc.scatter([p["fpr"]], [p["recall"]], zorder=5, color=color, label=text)
    roc.plot([0, 1], [0, 1], linestyle=":", color="grey", linewidth=1)
    pr.set(
        xlabel="recall",
        ylabel="precision",
        title=f"Precision-recall (AP {fmt_value(report['pr_auc'])})",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
    )
    roc.set(
        xlabel="false positive rate",
        ylabel="recall (TPR)",
        title=f"ROC (AUC {fmt_value(report['roc_auc'])})",
        xlim=(0, 1.02),
        ylim=(0, 1.02),
    )
    for ax in (pr, roc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left" if ax is pr else "lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
