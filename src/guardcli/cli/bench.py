"""`guard bench`: time the model's variants side by side on this machine."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from guardcli.cli._bench_stream import ChunkTokensListOpt, ContextsOpt, bench_stream, stream_mode
from guardcli.cli._bench_table import render_table
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
from guardcli.cli._output import (
    REPORT_FORMATS,
    choose_format,
    fail,
    handle_errors,
    stderr,
    with_status,
)
from guardcli.core import cpu
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.strict_json import dumps
from guardcli.core.synthetic import is_synthetic

SIZES = ("tiny", "full")

EPILOG = (
    "Exit codes: 0 done, 2 usage or input error, 3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  guard bench --variant fp32,int8 --batch-size 1,8\n\n"
    "  guard bench --synthetic --size full --duration 30 --format json > bench.json\n\n"
    "  guard bench --data prompts.jsonl --price-per-hour 0.10\n\n"
    "  head -n 200 prompts.jsonl | guard bench --data - --variant fp32,int8\n\n"
    "  guard bench -m ./qwen3guard-gen-tiny --mode generate,score --batch-size 1,4\n\n"
    "  guard bench -m ./qwen3guard-stream-tiny --mode stream --chunk-tokens 1,8 --contexts 128\n\n"
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
    synth_name: Annotated[
        str | None,
        typer.Option(
            "--family",
            help="With --synthetic: which model to build, a `guard synth` name (csam-guard, "
            "hf-seqcls: Prompt Guard 2 86M's dimensions at full size, qwen3guard-gen, ...). "
            "Default: csam-guard.",
        ),
    ] = None,
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
            "each gets rows of its own. Default: both. stream (qwen3guard-stream): per-token "
            "cost of judging a stream, see --chunk-tokens, --contexts. Others run one way.",
        ),
    ] = None,
    batch_size: Annotated[
        str, typer.Option("--batch-size", help="Comma list of batch sizes.")
    ] = "1,8,32",
    chunk_tokens: ChunkTokensListOpt = None,
    contexts: ContextsOpt = None,
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
    if synth_name is not None and not synthetic:
        raise fail("--family chooses the model --synthetic builds.", "Add --synthetic.")
    if seq_len is not None and data is not None:
        raise fail("Give --seq-len or --data, not both.")
    if size not in SIZES:
        raise fail(f"Unknown size {size!r}.", f"Choose one of: {', '.join(SIZES)}.")
    if duration <= 0:
        raise fail("--duration must be above 0 seconds.")
    sizes = parse_batch_sizes(batch_size)
    console = stderr()
    if synthetic:
        from guardcli.jobs.synthetic import DEMO_MODEL, synthetic_model

        model_dir = synthetic_model(size, name=synth_name or DEMO_MODEL)
    else:
        try:
            model_dir = resolve(model or "csam-guard", "auto").path
        except GuardError as err:
            if model is not None or err.code != ExitCode.MODEL:
                raise
            err.hint = f"{err.hint} Or benchmark the architecture alone with --synthetic."
            raise
    if stream_mode(mode, chunk_tokens, contexts):
        lists = (chunk_tokens, contexts)
        bench_stream(model_dir, variant, backend, lists, threads=threads, fmt=fmt, quiet=quiet)
        return
    variants = parse_variants(variant, model_variants(model_dir), backend, model_dir)
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
    report = with_status(lambda progress: run_bench(config, progress=progress), quiet)
    if fmt == "json":
        sys.stdout.write(dumps(report, indent=2, null_non_finite=True) + "\n")
    else:
        render_table(report)
