"""Distance to the limit: each bench row's achieved GOP/s against this machine's best GEMM rate
on the model's own MatMul shapes at that batch (runtime/gemm_limits.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardcli.core.cpu import read_cpu, usable_cpus
from guardcli.runtime.gemm_limits import PRECISION_OF, clock_ghz, measure, theoretical_peak
from guardcli.runtime.graph_ops import graph_ops

DEFINITIONS = {
    "ops_per_token": "MatMul/Gemm operations (2*M*N*K) per token of the model, read from its "
    "FP32 ONNX graph's shapes at the row's mean prompt length (attention MatMuls included)",
    "achieved_gops": "ops_per_token * tokens_per_s / 1e9 (model time only)",
    "limit_gops": "this machine's best measured GEMM rate for the row's precision on the "
    "model's own weight MatMul shapes at M = batch x sequence (onnxruntime or OpenVINO, "
    "whichever is faster; limits.by_batch names it)",
    "share_of_limit": "achieved_gops / limit_gops",
}


def fp32_graph(model_dir: Path) -> Path | None:
    """The model's FP32 ONNX graph (its arithmetic is the same in every variant)."""
    for name in ("model.onnx",):
        for path in (model_dir / "onnx" / name, model_dir / name):
            if path.is_file():
                return path
    return None


def add_limits(report: dict[str, Any], model_dir: Path, threads: int | None) -> None:
    """Add ops, achieved GOP/s and share of the limit to each row, and `report["limits"]`."""
    graph = fp32_graph(Path(model_dir))
    if graph is None:
        report["limits"] = {"error": "no FP32 ONNX graph to read the model's MatMuls from"}
        return
    ops = graph_ops(graph)
    rows = report["results"]
    settings = report["settings"]
    # The tokens a prompt really has (a chat template adds to --seq-len): the limit's M.
    seq = max(1, round(sum(r["tokens"] for r in rows) / max(sum(r["prompts"] for r in rows), 1)))
    info = read_cpu()
    cores = threads or usable_cpus()
    by_batch: dict[str, Any] = {}
    for size in settings["batch_sizes"]:
        by_batch[str(size)] = measure(size * seq, ops.weights, threads=threads)
    report["limits"] = {
        "seq_len": seq,
        "graph": str(graph),
        "ops": ops.as_dict(seq),
        "by_batch": by_batch,
        "peak": theoretical_peak(info.flags, cores, clock_ghz()),
    }
    for row in rows:
        tokens = row["tokens"] / max(row["prompts"], 1)
        row["ops_per_token"] = ops.per_token(tokens)
        row["achieved_gops"] = row["ops_per_token"] * row["tokens_per_s"] / 1e9
        precision = PRECISION_OF.get(row["variant"])
        limit = by_batch[str(row["batch_size"])]["limits"].get(precision or "")
        row["limit_precision"] = precision
        row["limit_gops"] = limit["gops"] if limit else None
        row["share_of_limit"] = row["achieved_gops"] / limit["gops"] if limit else None
    report["definitions"] = {**report["definitions"], **DEFINITIONS}


def limit_lines(report: dict[str, Any]) -> list[str]:
    """The machine's limits, for the lines above the bench table."""
    limits = report.get("limits")
    if not limits:
        return []
    if "error" in limits:
        return [f"limits: {limits['error']}"]
    ops = limits["ops"]
    lines = [
        f"model: {ops['ops_per_token'] / 1e9:.3g} GOP/token at {limits['seq_len']} tokens "
        f"({ops['attention_ops_per_token'] / 1e9:.2g} of it attention), from its ONNX graph"
    ]
    for size, m in limits["by_batch"].items():
        best = ", ".join(
            f"{p.upper()} {v['gops']:,.0f} GOP/s ({v['path']})" for p, v in m["limits"].items()
        )
        lines.append(f"limit at batch {size} (M={m['m']}, the model's shapes): {best}")
    peak = limits["peak"]
    if peak.get("gops"):
        shown = ", ".join(f"{p.upper()} {v:,.0f}" for p, v in peak["gops"].items())
        lines.append(
            f"theoretical peak ({peak['simd_bits']}-bit SIMD, {peak['clock_ghz']:.2f} GHz as "
            f"/proc/cpuinfo says, {peak['cores']} cores, 2 FMA ports assumed): {shown} GOP/s"
        )
    else:
        lines.append("theoretical peak: clock unknown")
    return lines
