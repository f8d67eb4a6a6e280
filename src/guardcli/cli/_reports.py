"""Reports for people, drawn with rich: `guard sweep` and `guard compare` tables. The numbers
come from the library (sweep.run_sweep, convert.compare.compare_variants); only drawing lives
here."""

from __future__ import annotations

from typing import IO, Any

from guardcli.cli.sweep_render import ascii_pr_curve, f1_by_threshold, fmt_value, sparkline


def sweep_table(report: dict[str, Any], out: IO[str], *, title: str = "") -> None:
    """The sweep report for a person: counts at the threshold, operating points, groups,
    categories, an F1 sparkline and a PR curve in characters."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, soft_wrap=False, highlight=False)
    auc = f"ROC AUC {fmt_value(report['roc_auc'])}  PR AUC (AP) {fmt_value(report['pr_auc'])}"
    console.print(
        f"[bold]{title}[/]  n {report['n']} ({report['positives']} positive, "
        f"{report['negatives']} negative, {report['excluded']} left out)  {auc}"
    )
    at = report["at_threshold"]
    ci = report.get("bootstrap")
    table = Table(title=f"At threshold {fmt_value(at['threshold'])} ({report['threshold_source']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if ci:
        table.add_column(f"95% CI ({ci['n']} resamples, seed {ci['seed']})", justify="right")
    for name in ("precision", "recall", "f1", "fpr", "accuracy"):
        cells = [name, fmt_value(at[name])]
        if ci:
            band = ci.get(name)
            cells.append(
                f"{band['low']:.4f} - {band['high']:.4f}"
                if band and band["low"] is not None
                else ""
            )
        table.add_row(*cells)
    counts = ", ".join(f"{c} {at[c]}" for c in ("tp", "fp", "tn", "fn"))
    table.caption = counts
    console.print(table)
    console.print(_points_table(report))
    if report.get("groups"):
        groups = Table(title=f"By {', '.join(report.get('group_by', []))} (worst first)")
        for col in ("group", "n", "positives", "recall", "precision", "fpr"):
            groups.add_column(col, justify="left" if col == "group" else "right")
        for g in report["groups"]:
            groups.add_row(
                str(g["group"]),
                str(g["n"]),
                str(g["positives"]),
                fmt_value(g["recall"]),
                fmt_value(g["precision"]),
                fmt_value(g["fpr"]),
            )
        console.print(groups)
    if report.get("categories"):
        cats = Table(title=f"Per category (threshold picked by {report['pick']['rule']})")
        for col in ("category", "n", "positives", "roc_auc", "pr_auc", "picked", "recall", "prec"):
            cats.add_column(col, justify="left" if col == "category" else "right")
        for name, cat in report["categories"].items():
            pick = cat["operating_points"].get(cat["pick"]["rule"]) or {}
            cats.add_row(
                name,
                str(cat["n"]),
                str(cat["positives"]),
                fmt_value(cat["roc_auc"]),
                fmt_value(cat["pr_auc"]),
                fmt_value(cat["pick"]["threshold"]),
                fmt_value(pick.get("recall")),
                fmt_value(pick.get("precision")),
            )
        console.print(cats)
    if len(report["curve"]) > 1:
        console.print(f"F1 by threshold 0 → 1: {sparkline(f1_by_threshold(report['curve']))}")
        marks = {
            "best_f1": report["operating_points"].get("best_f1"),
            "pick": report["operating_points"].get(report["pick"]["rule"]),
            "at_threshold": at,
        }
        console.print("Precision-recall curve (T: --threshold, F: best F1, P: picked):")
        for line in ascii_pr_curve(report["curve"], marks):
            console.print(line, markup=False)


def _points_table(report: dict[str, Any]):
    from rich.table import Table

    table = Table(title="Operating points", caption="* the picked rule (--pick)")
    cells = ("precision", "recall", "f1", "fpr")
    for col in ("rule", "threshold", *cells):
        table.add_column(col, justify="left" if col == "rule" else "right")
    for name, point in report["operating_points"].items():
        rule = name.replace("_", "-")
        if point is not None and point["target"] is not None:
            rule += f" {point['target']:g}"
        rule += " *" if name == report["pick"]["rule"] else ""
        if point is None:
            table.add_row(rule, "none", *[""] * len(cells))
            continue
        table.add_row(rule, f"{point['threshold']:.6g}", *(fmt_value(point[c]) for c in cells))
    return table


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _ids(ids: list[Any], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... (+{len(ids) - limit})" if len(ids) > limit else "")


def compare_table(report: dict[str, Any], out: IO[str]) -> None:
    """The report for a person: one row per variant, then the stability check."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, soft_wrap=False, highlight=False)
    console.print(
        f"[bold]{report['model']}[/]  n {report['n']} ({report['labelled']} labelled, "
        f"{report['excluded']} left out), threshold {report['threshold']:g}"
    )
    table = Table(title="Against FP32: decision flips, |Δscore|, quality")
    cols: tuple[str, ...] = ("variant", "flips", "rate", "max |Δ|", "p99 |Δ|")
    labelled = report["labelled"] > 0
    if labelled:
        cols += ("recall", "Δrecall", "prec", "Δprec")
    for col in cols:
        table.add_column(col, justify="left" if col == "variant" else "right")
    for name, e in report["variants"].items():
        flips, delta = e.get("flips"), e.get("delta")
        row = [
            name,
            "-" if flips is None else str(flips["count"]),
            "-" if flips is None else fmt_value(flips["rate"]),
            "-" if delta is None else fmt_value(delta["max"]),
            "-" if delta is None else fmt_value(delta["p99"]),
        ]
        if labelled:
            row += [
                fmt_value(e.get("recall")),
                _signed(e.get("recall_change")),
                fmt_value(e.get("precision")),
                _signed(e.get("precision_change")),
            ]
        table.add_row(*row)
    console.print(table)
    for name, e in report["variants"].items():
        if e.get("flips", {}).get("ids"):
            console.print(f"{name} flipped: {_ids(e['flips']['ids'])}", markup=False)
    if report["perturbations"]:
        stab = Table(title="Stability: decision flips under harmless perturbations")
        stab.add_column("variant")
        for p in report["perturbations"]:
            stab.add_column(p.replace("_", " "), justify="right")
        for name, e in report["variants"].items():
            cells = [name]
            for p in report["perturbations"]:
                s = e["stability"][p]
                cells.append(f"{s['flips']}/{s['n']} ({fmt_value(s['rate'], 3)})")
            stab.add_row(*cells)
        console.print(stab)
