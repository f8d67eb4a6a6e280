"""`guard probe-cpu`: which model variant this CPU runs best with onnxruntime, and why."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from guardcli.cli._options import CountOption, ReportFormatOpt, VerboseOpt
from guardcli.cli._output import REPORT_FORMATS, choose_format, fail, handle_errors, stderr
from guardcli.core.cpu import probe, usable_cpus
from guardcli.core.strict_json import dumps
from guardcli.runtime import gemm_check
from guardcli.runtime.gemm_check import verify as run_verify

EPILOG = (
    "Exit codes: 0 reported, 2 usage or input error, 3 runtime error.\n\n"
    "Examples:\n\n"
    "  guard probe-cpu\n\n"
    "  guard probe-cpu --verify      # time the MatMuls; --variant auto then follows them\n\n"
    "  guard probe-cpu --verify -m ./csam-guard --batch-size 1,8   # and the model's own shapes\n\n"
    "  guard probe-cpu --cpuinfo other-host-cpuinfo.txt --format json"
)


def _render(report: dict[str, Any]) -> None:
    out = typer.echo
    out(f"cpu:          {report['model']} ({report['arch']}, from {report['source']})")
    if report["usable_cpus"] is not None:
        out(f"usable cpus:  {report['usable_cpus']} (affinity and cgroup quota)")
    ort = report["onnxruntime"]
    if ort is not None:
        if ort["installed"]:
            providers = ", ".join(ort["providers"] or ["?"])
            out(f"onnxruntime:  {ort['version']} ({providers})")
        else:
            out("onnxruntime:  not installed")
    have = [k for k, v in report["features"].items() if v]
    lack = [k for k, v in report["features"].items() if not v]
    out(f"features:     {' '.join(have) or '-'}")
    out(f"missing:      {' '.join(lack) or '-'}")
    out(
        f"recommended:  {report['recommended_variant']}  "
        f"(order: {' > '.join(report['variant_order'])})"
    )
    for reason in report["reasons"]:
        out(f"  - {reason}")
    if "verify" in report:
        v = report["verify"]
        m, k, n = v["shape"]
        out(f"measured:     [{m},{k}]x[{k},{n}] MatMul, {v['threads']} threads")
        for row in v["timings"]:
            if row["error"]:
                out(f"  {row['variant']:7} failed: {row['error']}")
            else:
                out(
                    f"  {row['variant']:7} {row['ms']:8.2f} ms  {row['gflops']:7.1f} GFLOP/s  "
                    f"{row['ratio_vs_fp32']:.2f}x fp32"
                )
        out(
            f"  fastest measured: {v['fastest']}"
            + (
                ""
                if v["fastest"] == report["recommended_variant"]
                else f" (differs from the recommendation {report['recommended_variant']})"
            )
        )
    if report.get("measured"):
        m = report["measured"]
        out(f"auto order:   {' > '.join(m['order'])}")
        out(f"  from the measurement of {m['measured_at']}, stored in {m['path']}")
    else:
        out("auto order:   from the flags above; `guard probe-cpu --verify` measures and stores it")


def _model_limits(model: Path, batch_size: str, seq_len: int) -> dict[str, Any]:
    from guardcli.jobs.bench.limits import fp32_graph
    from guardcli.jobs.bench.plan import parse_batch_sizes
    from guardcli.runtime.gemm_limits import measure
    from guardcli.runtime.graph_ops import graph_ops

    graph = fp32_graph(model)
    if graph is None:
        raise fail(f"{model} has no FP32 ONNX graph (onnx/model.onnx) to read its MatMuls from.")
    ops = graph_ops(graph)
    sizes = parse_batch_sizes(batch_size)
    return {
        "graph": str(graph),
        "seq_len": seq_len,
        "ops": ops.as_dict(seq_len),
        # --verify measures: a limit cached from a busy moment is replaced, not reused.
        "by_batch": {str(b): measure(b * seq_len, ops.weights, fresh=True) for b in sizes},
    }


def _render_limits(limits: dict[str, Any]) -> None:
    ops = limits["ops"]
    typer.echo(
        f"model:        {limits['graph']}: {ops['ops_per_token'] / 1e9:.3g} GOP/token at "
        f"{limits['seq_len']} tokens"
    )
    for size, m in limits["by_batch"].items():
        paths = ", ".join(f"{p} {rate:,.0f}" for p, rate in m["paths"].items())
        busy = m.get("other_work")
        note = f" (other work used {busy:.0%} of the CPU meanwhile)" if busy else ""
        typer.echo(f"  batch {size} (M={m['m']}), its own shapes, GOP/s: {paths}{note}")


@handle_errors
def probe_cpu(
    *,
    fmt: ReportFormatOpt = None,
    cpuinfo: Annotated[
        Path | None,
        typer.Option(
            "--cpuinfo",
            help="Analyse another machine: a copy of its /proc/cpuinfo, or a macOS "
            "`sysctl hw machdep.cpu.brand_string` dump.",
            dir_okay=False,
        ),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Also time the model's MatMul shapes on every path (onnxruntime FP32, FP16, "
            "INT8; with OpenVINO installed ov-fp32, bf16, ov-int8), a few seconds, report the "
            "ratios and store them: `--variant auto` then follows the measurement.",
        ),
    ] = False,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model",
            "-m",
            help="With --verify: also time this model folder's own MatMul shapes (read from "
            "its FP32 ONNX graph) at M = batch x --seq-len rows on every path: the limit "
            "`guard bench` shows each row's share of (stored per CPU, and reused by it; "
            "each --verify measures again, so run it on a quiet machine).",
            file_okay=False,
        ),
    ] = None,
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="With --model: comma list of batch sizes.")
    ] = "8",
    seq_len: Annotated[int, CountOption("--seq-len", help="With --model: tokens per prompt.")] = 48,
    verbose: VerboseOpt = False,
) -> None:
    """Report CPU features, usable cores and onnxruntime, and recommend the variant
    (fp32|fp16|int8) onnxruntime runs fastest here, with reasons. `--variant auto` follows it,
    or the stored `--verify` measurement (backends included) when there is one for this CPU.
    """
    from guardcli.core.variants import load_measurement, measurement_path, save_measurement

    fmt = choose_format(fmt, REPORT_FORMATS)
    if cpuinfo is not None and not cpuinfo.is_file():
        raise fail(f"Cannot read {cpuinfo}: no such file.")
    if verify and cpuinfo is not None:
        raise fail("--verify measures this machine; it cannot be combined with --cpuinfo.")
    report = probe(cpuinfo)
    if verify:
        if fmt == "table":
            stderr().print("timing MatMuls on every path …")
        timings = run_verify(gemm_check.DEFAULT_SHAPE)
        ok = [t for t in timings if t.error is None]
        report["verify"] = {
            "shape": list(gemm_check.DEFAULT_SHAPE),
            "threads": usable_cpus(),
            "timings": [t.as_dict() for t in timings],
            "fastest": max(ok, key=lambda t: t.ratio).variant,
        }
        save_measurement(report["verify"]["timings"], report["verify"]["shape"])
    if model is not None:
        if not verify:
            raise fail("--model says whose shapes --verify times: add --verify.")
        report["limits"] = _model_limits(model, batch_size, seq_len)
    if cpuinfo is None and (stored := load_measurement()) is not None:
        report["measured"] = {
            "order": stored["order"],
            "measured_at": stored.get("measured_at"),
            "path": str(measurement_path()),
        }
    if fmt == "json":
        sys.stdout.write(dumps(report, indent=2, null_non_finite=True) + "\n")
    else:
        _render(report)
        if "limits" in report:
            _render_limits(report["limits"])
