"""Per-token cost of streaming moderation with Qwen3Guard-Stream (KV cache kept between chunks).

The same measurement as `guard bench --mode stream` (guardcli.jobs.bench.stream), written to a
results file: for each variant and context length, the context is prefilled once, then answer
tokens are fed in chunks of 1, 8 and 16 on that cache (cropped back between chunk sizes), every
call timed: p50 per token = p50 call time / k. The prefill time is also what the shipped
`stream_moderate_from_ids` loop pays for every token (it re-feeds the whole sequence).
Agreement: each variant's per-token risk argmax against the PyTorch reference (FP32) at the
shortest context.

Build the model first (a minute or two, ~3 GB on disk; the INT8 graph a few minutes more):

    guard synth qwen3guard-stream --size full --out /tmp/qs_full
    python -c "from guardcli.families.qwen3guard_stream.export import quantize_folder as q; \
q('/tmp/qs_full')"
    python benchmarks/stream_cost.py /tmp/qs_full [--contexts 128,4096] [--chunks 1,8,16]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from guardcli.jobs.bench.stream import StreamBenchConfig, parse_counts, run_stream_bench


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--contexts", default="128,4096")
    ap.add_argument("--chunks", default="1,8,16")
    ap.add_argument("--variants", default="fp32,int8")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/stream_cost.json"))
    args = ap.parse_args()
    config = StreamBenchConfig(
        model_dir=args.model,
        variants=args.variants.split(","),
        chunks=parse_counts(args.chunks, "chunks"),
        contexts=parse_counts(args.contexts, "contexts"),
        threads=args.threads,
    )
    report = run_stream_bench(config, progress=lambda msg: print(msg, flush=True))
    for row in report["results"]:
        print(json.dumps(row), flush=True)
    for g in report["growth"]:
        print(
            f"{g['variant']} chunk {g['chunk']}: p50/token x{g['growth']:.2f} from "
            f"{g['from_context']} to {g['to_context']} tokens of context"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print("cpu:", report["machine"]["cpu_model"])


if __name__ == "__main__":
    main()
