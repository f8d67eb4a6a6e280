"""`guard bench`: time the model's variants side by side on this machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from guardcli.cli._bench_columns import (
    _delta,
    _num,
    _percent,
    _usd,
    extra_cells,
    extra_headers,
    extra_notes,
)
from guardcli.cli._options import (
    BackendOpt,
    CountOption,
    DtypeOpt,
    FractionOption,
    PositiveFloatOption,
    QuietOpt,
    ReportFormatOpt,
    ThreadsOpt,
    VerboseOpt,
    backend_name,
)
from guardcli.cli._output import REPORT_FORMATS, choose_format, fail, handle_errors, stderr
from guardcli.core import cpu
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.strict_json import dumps
from guardcli.core.synthetic import is_synthetic
from guardcli.jobs.bench.limits import limit_lines

SIZES = ("tiny", "full")

EPILOG = (
    "Exit codes: 0 done, 2 usage or input error, 3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard bench --variant fp32,int8 --batch-size 1,8\n\n"
    "  guard bench --synthetic --size full --duration 30 --format json > bench.json\n\n"
    "  guard bench --data prompts.jsonl --price-per-hour 0.10\n\n"
    "  head -n 200 prompts.jsonl | guard bench --data - --variant fp32,int8\n\n"
    "  guard bench -m ./qwen3guard-gen-tiny --mode generate,score --batch-size 1,4\n\n"
    "  guard bench -m ./opencc-cm --batch-size 1,8    # torch + peft: the lora path"
)


@handle_errors
def bench(
    *,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Catalog name (from the local cache) or a model folder."
        ),
    ] = None,
    synthetic: Annotated[
        bool,
        typer.Option(
            "--synthetic", help="Benchmark a random-weight model of the real architecture."
        ),
    ] = False,
    size: Annotated[
        str, typer.Option("--size", help="With --synthetic: tiny (seconds) or full (real size).")
    ] = "tiny",
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="Comma list of fp32,fp16,int8,bf16,ov-fp32,ov-int8, torch (a generative "
            "guard's checkpoint), lora (an OpenCC adapter), or all (every path present that "
            "this install can run).",
        ),
    ] = "all",
    backend: BackendOpt = None,
    dtype: DtypeOpt = None,
    mode: Annotated[
        str | None,
        typer.Option(
            "--mode",
            help="Generative guards (qwen3guard-gen): comma list of generate (greedy decoding, "
            "the verdict from its text, as classify --no-score) and score (one forward pass); "
            "each gets rows of its own. Default: both. Other families run one way.",
        ),
    ] = None,
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="Comma list of batch sizes.")
    ] = "1,8,32",
    seq_len: Annotated[
        int | None,
        CountOption("--seq-len", help="Synthetic prompts of this many tokens. Default: 48."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Real prompts: JSONL (text or prompt field) or plain lines ('-' for stdin).",
            dir_okay=False,
        ),
    ] = None,
    threads: ThreadsOpt = None,
    duration: Annotated[
        float,
        PositiveFloatOption(
            "--duration", help="Seconds of timing per variant x batch size (x mode)."
        ),
    ] = 10.0,
    price_per_hour: Annotated[
        float | None,
        PositiveFloatOption(
            "--price-per-hour", help="Machine price in USD/hour: adds cost per 1M tokens."
        ),
    ] = None,
    duplicates: Annotated[
        float,
        FractionOption(
            "--duplicates",
            help="Share of the timed prompts that repeat earlier ones (e.g. 0.3); each row is "
            "then also timed through the verdict cache, with the speed-up.",
        ),
    ] = 0.0,
    limits: Annotated[
        bool,
        typer.Option(
            "--limits/--no-limits",
            envvar="GUARD_BENCH_LIMITS",
            help="Measure this machine's GEMM rate on the model's own MatMul shapes (once per "
            "CPU, cached) and show each row's GOP/s and share of it.",
        ),
    ] = True,
    fmt: ReportFormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Time the model's variants side by side on this machine, and say which to ship.

    Variants run interleaved (A B C, B C A, ...) after a warm-up, each in a process of its own,
    so machine drift falls on all of them alike and each one's peak memory is its own. Reports
    prompts/s, tokens/s (real tokens, not padding), latency percentiles per request and per
    batch, session load time, peak RSS, size on disk, the ratio to FP32, and the end-to-end
    rate with tokenization included. Generative guards report generated tokens/s too, and
    every variant's agreement with the first one (FP32 when it runs): max |Δscore| in score
    mode, the share of identical severities in generate mode.
    """
    backend = backend_name(backend)
    from guardcli.core.resolve import resolve
    from guardcli.jobs.bench.runner import (
        BenchConfig,
        family_modes,
        model_variants,
        parse_batch_sizes,
        parse_modes,
        parse_variants,
        run_bench,
        without_emulated,
    )

    fmt = choose_format(fmt, REPORT_FORMATS)
    if synthetic and model is not None:
        raise fail("Give --model or --synthetic, not both.")
    if seq_len is not None and data is not None:
        raise fail("Give --seq-len or --data, not both.")
    if size not in SIZES:
        raise fail(f"Unknown size {size!r}.", f"Choose one of: {', '.join(SIZES)}.")
    if duration <= 0:
        raise fail("--duration must be above 0 seconds.")
    sizes = parse_batch_sizes(batch_size)
    console = stderr()
    if synthetic:
        from guardcli.jobs.synthetic import synthetic_model

        model_dir = synthetic_model(size)
    else:
        try:
            model_dir = resolve(model or "csam-guard", "auto").path
        except GuardError as err:
            if model is not None or err.code != ExitCode.MODEL:
                raise
            err.hint = f"{err.hint} Or benchmark the architecture alone with --synthetic."
            raise
    variants = parse_variants(variant, model_variants(model_dir), backend)
    if variant.strip() == "all":
        variants, emulated = without_emulated(variants, cpu.read_cpu().flags)
        if emulated and not quiet:
            console.print(
                f"note: left out {', '.join(emulated)}: this CPU has no native bf16 (AMX, "
                "avx512_bf16), so it would be emulated and take minutes a batch. Name it with "
                "--variant to time it anyway.",
                markup=False,
            )
    family, runs = family_modes(model_dir)
    modes = parse_modes(mode, runs, family)
    config = BenchConfig(
        model_dir=model_dir,
        variants=variants,
        modes=modes,
        batch_sizes=sizes,
        seq_len=seq_len,
        data=data,
        threads=threads,
        duration=duration,
        price_per_hour=price_per_hour,
        dtype=dtype,
        duplicates=duplicates,
        limits=limits,
    )
    if not quiet:
        if synthetic or is_synthetic(model_dir):
            console.print(f"note: {model_dir} is a synthetic model with random weights.")
        rounds = len(variants) * len(sizes) * max(1, len(modes))
        how = f" ({', '.join(modes)})" if modes else ""
        console.print(
            f"benchmarking {', '.join(variants)}{how} at batch {', '.join(map(str, sizes))}: "
            f"about {rounds * duration:.0f}s of timing after loading and warm-up"
        )
    status = console.status("loading…") if console.is_terminal and not quiet else None
    if status:
        status.start()
    try:
        report = run_bench(config, progress=status.update if status else lambda _: None)
    finally:
        if status:
            status.stop()
    if fmt == "json":
        sys.stdout.write(dumps(report, indent=2, null_non_finite=True) + "\n")
    else:
        render_table(report)


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
