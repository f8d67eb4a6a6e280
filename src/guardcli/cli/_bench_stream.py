"""`guard bench --mode stream`: its options, the run, and its table (jobs.bench.stream)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from guardcli.cli._output import fail, stderr, with_status
from guardcli.core.strict_json import dumps

ChunkTokensListOpt = Annotated[
    str | None,
    typer.Option(
        "--chunk-tokens",
        help="With --mode stream: comma list of chunk sizes, answer tokens judged per call "
        "(as `guard stream --chunk-tokens`). Default: 1,8,16.",
    ),
]
ContextsOpt = Annotated[
    str | None,
    typer.Option(
        "--contexts",
        help="With --mode stream: comma list of context lengths, tokens already judged when "
        "the timed answer tokens arrive. Default: 128,1024,4096.",
    ),
]


def stream_mode(mode: str | None, chunk_tokens: str | None, contexts: str | None) -> bool:
    """Whether `guard bench` runs in stream mode; a usage error for a mix that means nothing."""
    from guardcli.jobs.bench.plan import parse_list
    from guardcli.jobs.bench.stream import STREAM_MODE

    modes = parse_list(mode, "mode") if mode is not None else []
    if STREAM_MODE in modes:
        if len(modes) > 1:
            raise fail("--mode stream runs alone.", "Run the other modes in a bench of their own.")
        return True
    if chunk_tokens is not None or contexts is not None:
        raise fail("--chunk-tokens and --contexts go with --mode stream.")
    return False


def bench_stream(
    model_dir: Path,
    variant: str,
    backend: str | None,
    lists: tuple[str | None, str | None],
    *,
    threads: int | None,
    fmt: str,
    quiet: bool,
) -> None:
    """Run and render `guard bench --mode stream`; `lists`: --chunk-tokens and --contexts."""
    from guardcli.core.registry import folder_family
    from guardcli.core.synthetic import is_synthetic
    from guardcli.jobs.bench.plan import model_variants, parse_variants
    from guardcli.jobs.bench.stream import (
        DEFAULT_CHUNKS,
        DEFAULT_CONTEXTS,
        REFERENCE,
        StreamBenchConfig,
        parse_counts,
        run_stream_bench,
        stream_hook,
        timed_tokens,
    )

    stream_hook(model_dir)  # says so when the model judges no streams
    chunk_tokens, contexts = lists
    chunks = parse_counts(chunk_tokens, "chunk-tokens") if chunk_tokens else list(DEFAULT_CHUNKS)
    limit = folder_family(model_dir).max_length - timed_tokens(chunks)
    lengths = (
        parse_counts(contexts, "contexts", maximum=limit) if contexts else list(DEFAULT_CONTEXTS)
    )
    present = model_variants(model_dir)
    if variant.strip() == "all":  # the graphs; the torch reference is timed only when named
        present = [v for v in present if v != REFERENCE] or present
    variants = parse_variants(variant, present, backend, model_dir)
    console = stderr()
    if not quiet:
        if is_synthetic(model_dir):
            console.print(f"note: {model_dir} is a synthetic model with random weights.")
        console.print(
            f"benchmarking {', '.join(variants)} streams: chunks of {_list(chunks)} tokens after "
            f"{_list(sorted(lengths))} tokens of context"
        )
    config = StreamBenchConfig(
        model_dir=model_dir, variants=variants, chunks=chunks, contexts=lengths, threads=threads
    )
    report = with_status(lambda progress: run_stream_bench(config, progress=progress), quiet)
    if fmt == "json":
        sys.stdout.write(dumps(report, indent=2, null_non_finite=True) + "\n")
    else:
        render_stream_table(report)


def _list(values: list[int]) -> str:
    return ",".join(map(str, values))


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.{digits}f}"


def render_stream_table(report: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    out = Console(file=sys.stdout, highlight=False, width=max(100, Console().width))
    m, model, s = report["machine"], report["model"], report["settings"]
    out.print(
        f"{m['cpu_model']}, {m['usable_cores']} usable cores, {m['threads']} threads, "
        f"onnxruntime {m['onnxruntime']}"
    )
    note = " (SYNTHETIC: random weights; timings hold for its architecture and size)"
    out.print(f"model: {model['path']}{note if model['synthetic'] else ''}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in (
        "variant",
        "chunk",
        "context",
        "ms/token\np50",
        "tokens\n/s",
        "prefill\nms",
        "agree vs\nreference",
        "max |Δ logit|\nvs reference",
    ):
        table.add_column(name, justify="left" if name == "variant" else "right", no_wrap=True)
    last = None
    for r in report["results"]:
        if last is not None and (r["variant"], r["chunk"]) != last:
            table.add_section()
        last = (r["variant"], r["chunk"])
        agree = r["agreement_vs_reference"]
        delta = r["max_abs_dlogit_vs_reference"]
        table.add_row(
            r["variant"],
            str(r["chunk"]),
            f"{r['context']:,}",
            _fmt(r["p50_ms_per_token"]),
            _fmt(r["tokens_per_s"], 1),
            _fmt(r["prefill_ms"], 1),
            "-" if agree is None else f"{100 * agree:.0f}%",
            "-" if delta is None else f"{delta:.2g}",
        )
    out.print(table)
    for g in report["growth"]:
        out.print(
            f"{g['variant']} chunk {g['chunk']}: per-token p50 ×{g['growth']:.2f} from "
            f"{g['from_context']:,} to {g['to_context']:,} tokens of context"
        )
    out.print(
        f"{s['timed_tokens']} answer tokens timed per chunk size and context; ms/token: p50 of "
        "call time / chunk; prefill: the context from empty, what a prompt check of that length "
        f"costs; agree: risk argmax equal to the {s['reference'] or 'not run'} reference's "
        "at the shortest context."
    )
