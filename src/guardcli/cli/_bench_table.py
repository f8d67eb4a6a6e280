"""`guard bench`'s table: the machine, the model, a row per variant x mode x batch."""

from __future__ import annotations

import sys
from typing import Any

from guardcli.cli._bench_columns import (
    _delta,
    _num,
    _percent,
    _usd,
    extra_cells,
    extra_headers,
    extra_notes,
)
from guardcli.jobs.bench.limits import limit_lines


def _agreement(row: dict[str, Any]) -> float | None:
    """Severity agreement for generated verdicts, flag agreement otherwise."""
    if row.get("mode") == "generate":
        return row.get("severity_agreement_vs_ref")
    return row.get("flag_agreement_vs_ref")


def render_table(report: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    from guardcli.jobs.bench.runner import AGREEMENT_PROMPTS

    out = Console(file=sys.stdout, highlight=False)
    m, model = report["machine"], report["model"]
    out.print(
        f"{m['cpu_model']}, {m['usable_cores']} usable cores, {m['threads']} threads, "
        f"onnxruntime {m['onnxruntime']}"
        + (f", openvino {m['openvino']}" if m.get("openvino") else "")
        + (f", torch {m['torch']}" if m.get("torch") else "")
        + f", guardcli {m['guardcli']}"
    )
    out.print(f"features: {' '.join(m['features']) or 'none detected'}")
    note = " (SYNTHETIC: random weights; timings hold for its architecture and size)"
    out.print(f"model: {model['path']}{note if model['synthetic'] else ''}")
    for line in limit_lines(report):
        out.print(line)
    cost = any("usd_per_1m_tokens" in r for r in report["results"])
    modes = any(r.get("mode") for r in report["results"])
    generates = any(r.get("mode") == "generate" for r in report["results"])
    ref = report["settings"].get("reference", "fp32")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    headers = [
        "variant",
        *(["mode"] if modes else []),
        "batch",
        "prompts\n/s",
        "tokens\n/s",
        *(["new tok/s\n(generate)"] if generates else []),
        "×fp32",
        "ms/request\np50 p95 p99",
        "ms/batch\np50",
        "e2e\nprompts/s",
        "load\ns",
        "RSS\nMB",
        "size MB\n(×fp32)",
        f"max |Δ|\nvs {ref}",
        f"agree\nvs {ref}",
    ]
    for name in headers + (["$ per 1M\ntokens"] if cost else []) + extra_headers(report):
        left = name in ("variant", "mode")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    last = None
    for r in report["results"]:
        group = (r["batch_size"], r.get("mode"))
        if last is not None and group != last:
            table.add_section()
        last = group
        ratio = "-" if r["ratio_to_fp32"] is None else f"{r['ratio_to_fp32']:.2f}×"
        size_ratio = r["size_ratio_to_fp32"]
        size = f"{r['size_mb']:,.0f}" + ("" if size_ratio is None else f" ({size_ratio:.2f}×)")
        cells = [
            ("★ " if r["winner"] else "  ") + r["variant"],
            *([r.get("mode") or "-"] if modes else []),
            str(r["batch_size"]),
            _num(r["prompts_per_s"]),
            _num(r["tokens_per_s"]),
            *([_num(r.get("generated_tokens_per_s"))] if generates else []),
            ratio,
            " ".join(_num(r[k]) for k in ("p50_ms", "p95_ms", "p99_ms")),
            _num(r["batch_p50_ms"]),
            _num(r["e2e_prompts_per_s"]),
            _num(r["load_s"]),
            _num(r["peak_rss_mb"]),
            size,
            _delta(r.get("max_abs_diff_vs_ref")),
            _percent(_agreement(r)),
        ]
        if cost:
            cells.append(_usd(r.get("usd_per_1m_tokens")))
        cells += extra_cells(report, r)
        table.add_row(*cells, style="bold" if r["winner"] else None)
    # Numbers are never cut short: a narrow terminal gets a table wider than itself.
    out.width = max(out.width, Measurement.get(out, out.options.update_width(1000), table).maximum)
    out.print(table)
    for r in report["results"]:
        if r["winner"]:
            vs = "" if r["ratio_to_fp32"] is None else f", {r['ratio_to_fp32']:.2f}× FP32"
            how = f" ({r['mode']})" if r.get("mode") else ""
            out.print(
                f"★ fastest at batch {r['batch_size']}{how}: {r['variant']} "
                f"({_num(r['prompts_per_s'])} prompts/s{vs})"
            )
    s = report["settings"]
    prompts = f"{s['seq_len']}-token synthetic prompts" if "seq_len" in s else s.get("data")
    out.print(
        f"{prompts}; {s['duration_s']:g}s per variant × {'mode × ' if modes else ''}batch in "
        f"{s['rounds']} interleaved "
        "round(s). ms/req: a batch's model time per prompt. e2e: tokenization included. "
        "RSS: peak of a process holding only that variant. agree: share of the first "
        f"{s.get('agreement_prompts', AGREEMENT_PROMPTS)} prompts judged alike (flag; severity "
        "in generate mode)."
        + (
            " generate: greedy decoding to EOS or 128 new tokens; score: one forward pass."
            if modes
            else ""
        )
    )
    for line in extra_notes(report):
        out.print(line)
