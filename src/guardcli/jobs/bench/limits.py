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
    "achieved_gops": "the operations each prompt ran (its whole length, less a reused "
    "template head's: reused_tokens) * prompts_per_s / 1e9, model time only; "
    "= ops_per_token * tokens_per_s / 1e9 where nothing is reused",
    "limit_gops": "this machine's best measured GEMM rate for the row's precision on the "
    "model's own weight MatMul shapes at M = batch x sequence (onnxruntime or OpenVINO, "
    "whichever is faster; limits.by_batch names it)",
    "share_of_limit": "achieved_gops / limit_gops",
    "other_work": "share of the machine's CPU time other processes used while the limit was "
    "timed; above 10% the limit reads low (and shares high): `guard probe-cpu --verify "
    "--model DIR` measures it again",
}
# Above this share of the CPU used by other work while a limit was timed, say so.
BUSY_SHARE = 0.10


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
    # The tokens a prompt really computes (a chat template adds to --seq-len; a reused
    # template head's are not computed): the limit's M.
    computed = sum(r["tokens"] - r.get("reused_tokens", 0) for r in rows)
    seq = max(1, round(computed / max(sum(r["prompts"] for r in rows), 1)))
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
        prompts = max(row["prompts"], 1)
        tokens = row["tokens"] / prompts
        reused = row.get("reused_tokens", 0) / prompts
        row["ops_per_token"] = ops.per_token(tokens)
        per_prompt = ops.per_sequence(tokens) - (ops.per_sequence(reused) if reused else 0.0)
        row["achieved_gops"] = per_prompt * row["prompts_per_s"] / 1e9
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
        if (m.get("other_work") or 0.0) > BUSY_SHARE:
            lines.append(
                f"  timed while other work used {m['other_work']:.0%} of the CPU: it reads low; "
                f"`guard probe-cpu --verify --model MODEL --batch-size {size} --seq-len "
                f"{limits['seq_len']}` measures it again"
            )
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
