"""The verdict cache on a stream with repeats: `guard classify` (the classify job in-process,
model loaded once) and `guard serve` (its own process, /v1/moderations at concurrency C), each
with the cache and with --no-cache on the same prompts; verdicts must be identical.

    python benchmarks/cache_duplicates.py --model DIR --variant int8 --prompts 400

Prints one JSON object on stdout, a summary on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import serve_process  # noqa: E402

from guardcli import load_guard  # noqa: E402
from guardcli.core.records import Record  # noqa: E402
from guardcli.core.verdict_cache import VerdictCache  # noqa: E402
from guardcli.jobs.bench.duplicates import DuplicateStream  # noqa: E402
from guardcli.jobs.bench.inputs import synthetic_prompts  # noqa: E402
from guardcli.jobs.classify import classify_into  # noqa: E402


def classify_run(guard, texts: list[str], cached: bool) -> tuple[float, list[str], int]:
    guard.verdict_cache = VerdictCache() if cached else None
    records = [Record(id=i, text=t, line=i + 1) for i, t in enumerate(texts)]
    lines: list[str] = []
    start = time.perf_counter()
    summary = classify_into(
        guard, iter(records), lambda vs: lines.extend(json.dumps(v.to_dict()) for v in vs)
    )
    seconds = time.perf_counter() - start
    guard.verdict_cache = None
    return seconds, lines, summary.cached


async def _load(url: str, texts: list[str], concurrency: int) -> tuple[float, list]:
    sem = asyncio.Semaphore(concurrency)
    answers: list = [None] * len(texts)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=300) as client:

        async def one(i: int) -> None:
            async with sem:
                r = await client.post("/v1/moderations", json={"input": texts[i]})
            answers[i] = r.json()["results"][0] if r.status_code == 200 else r.status_code

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(texts))))
        return time.perf_counter() - start, answers


def serve_run(args, texts: list[str], cached: bool) -> tuple[float, list, str]:
    extra = argparse.Namespace(
        variant=args.variant,
        max_wait_ms=5.0,
        concurrency=args.concurrency,
        threads=args.threads,
        api_key=None,
    )
    with serve_process(extra, args.model, args.max_batch, [] if cached else ["--no-cache"]) as url:
        seconds, answers = asyncio.run(_load(url, texts, args.concurrency))
        metrics = httpx.get(f"{url}/metrics").text
    hits = [line for line in metrics.splitlines() if line.startswith("guard_cache_hits_total")]
    return seconds, answers, hits[0] if hits else "-"


def classify_rounds(guard, texts: list[str], rounds: int) -> dict:
    """Alternated rounds, the best of each side (as for serve below)."""
    guard.classify(texts[:16])  # warm-up
    plain_times, cached_times = [], []
    for _ in range(rounds):
        plain_s, plain, _ = classify_run(guard, texts, cached=False)
        cached_s, cached, hits = classify_run(guard, texts, cached=True)
        plain_times.append(plain_s)
        cached_times.append(cached_s)
    return {
        "no_cache_s": round(min(plain_times), 2),
        "cache_s": round(min(cached_times), 2),
        "speedup": round(min(plain_times) / min(cached_times), 3),
        "rounds": rounds,
        "hits": hits,
        "identical": plain == cached,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--prompts", type=int, default=400)
    parser.add_argument("--duplicates", type=float, default=0.3)
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--skip-classify", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, alternated")
    args = parser.parse_args()

    guard = load_guard(args.model, variant=args.variant, threads=args.threads)
    base = synthetic_prompts(guard.tokenizer, args.seq_len, 64)
    texts = DuplicateStream(base, args.duplicates).take(args.prompts)
    out: dict = {
        "model": args.model,
        "variant": args.variant,
        "prompts": len(texts),
        "distinct": len(set(texts)),
        "duplicates": args.duplicates,
    }
    if not args.skip_classify:
        out["classify"] = classify_rounds(guard, texts, args.rounds)
    if not args.skip_serve:
        del guard
        # Alternated rounds, the best of each: a machine whose load changes during the run
        # then weighs on both sides alike.
        plain_times, cached_times = [], []
        for _ in range(args.rounds):
            plain_s, plain_a, _ = serve_run(args, texts, cached=False)
            cached_s, cached_a, hits_line = serve_run(args, texts, cached=True)
            plain_times.append(plain_s)
            cached_times.append(cached_s)
        differ = [i for i, (a, b) in enumerate(zip(plain_a, cached_a, strict=True)) if a != b]
        out["serve"] = {
            "no_cache_s": round(min(plain_times), 2),
            "cache_s": round(min(cached_times), 2),
            "speedup": round(min(plain_times) / min(cached_times), 3),
            "rounds": args.rounds,
            "metrics": hits_line,
            "identical": not differ,
            "differ": [{"i": i, "plain": plain_a[i], "cached": cached_a[i]} for i in differ[:3]],
            "concurrency": args.concurrency,
        }
    print(json.dumps(out))
    for what in ("classify", "serve"):
        if what in out:
            r = out[what]
            print(
                f"{what}: {r['no_cache_s']}s without the cache, {r['cache_s']}s with it: "
                f"{r['speedup']}x, identical={r['identical']}",
                file=sys.stderr,
            )
    return 0 if all(out[w]["identical"] for w in ("classify", "serve") if w in out) else 1


if __name__ == "__main__":
    raise SystemExit(main())
