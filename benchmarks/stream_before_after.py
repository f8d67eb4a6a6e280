"""Two Qwen3Guard-Stream graphs timed in one run, interleaved call by call: per-token p50 at
one chunk size after each context length, and their ratio. Made to compare a graph exported
before GroupQueryAttention (attention as plain ops; the runner feeds the present back as the
past, a copy of the whole cache per layer and call) with the current export (one KV buffer per
layer written in place), on the same weights:

    python benchmarks/stream_before_after.py OLD/onnx/model.onnx NEW/onnx/model.onnx \
        [--contexts 128,4096] [--chunk 8] [--calls 8]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from guardcli.families.qwen3guard_stream.runners import OnnxRunner

PIECE = 512


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--contexts", default="128,4096")
    ap.add_argument("--chunk", type=int, default=8)
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(0)
    contexts = sorted(int(c) for c in args.contexts.split(","))
    ids = [rng.randrange(100, 150_000) for _ in range(contexts[-1])]
    chunk = [rng.randrange(100, 150_000) for _ in range(args.chunk)]
    runners = {
        name: OnnxRunner(path, threads=args.threads)
        for name, path in (("before", args.before), ("after", args.after))
    }
    for r in runners.values():
        r.feed(chunk)  # warm-up
        r.reset()
    for n in contexts:
        times: dict[str, list[float]] = {name: [] for name in runners}
        for r in runners.values():
            for i in range(r.length, n, PIECE):
                r.feed(ids[i : min(i + PIECE, n)])
        for _ in range(args.calls):
            for name, r in runners.items():
                r.crop(n)
                start = time.perf_counter()
                r.feed(chunk)
                times[name].append((time.perf_counter() - start) / args.chunk)
        p50 = {name: 1e3 * statistics.median(t) for name, t in times.items()}
        print(
            f"context {n}, chunk {args.chunk}: before {p50['before']:.2f} ms/token, after "
            f"{p50['after']:.2f} ms/token ({p50['before'] / p50['after']:.2f}x faster)",
            flush=True,
        )
        for r in runners.values():
            r.crop(n)


if __name__ == "__main__":
    main()
