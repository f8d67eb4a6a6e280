"""Served streams: total answer tokens/s with 1 stream vs N concurrent streams (not part of CI).

Each stream opens with a short prompt, then appends its answer a few words at a time (about
`--chunk` tokens per append) as fast as it is answered; N streams do so concurrently, so their
appends meet in the coalescer and share forwards. The figures are the server's
stream path (StreamService: tokenization, batching, the forward, verdicts) without HTTP.

    python benchmarks/stream_serve.py -m MODEL_DIR --variant int8 --streams 1,8 --tokens 96
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time

from guardcli import load_guard
from guardcli.jobs.serve.prometheus import Metrics
from guardcli.jobs.serve.stream_service import StreamOptions, StreamService

WORDS = (
    "river meadow lantern kettle maple pebble window violin harbor compass teacup ribbon".split()
)


def answer_pieces(seed: int, tokens: int, chunk: int) -> list[str]:
    """About `tokens` tokens of plain words (one word ~ one token), `chunk` words a piece."""
    words = [WORDS[(seed * 7 + i * 5) % len(WORDS)] for i in range(tokens)]
    return [" " + " ".join(words[i : i + chunk]) for i in range(0, tokens, chunk)]


def id_pieces(service: StreamService, seed: int, tokens: int, chunk: int) -> list[list[int]]:
    """The same answer as token ids (as a generating model streams them), `chunk` ids a piece."""
    text = "".join(answer_pieces(seed, tokens, tokens))
    ids = service.engine.tokenizer.encode(text, add_special_tokens=False).ids[:tokens]
    return [ids[i : i + chunk] for i in range(0, len(ids), chunk)]


async def run(
    service: StreamService, streams: int, tokens: int, chunk: int, ids: bool = False
) -> dict:
    opened = [
        await service.open([{"role": "user", "content": f"question {i} about a garden"}])
        for i in range(streams)
    ]
    judged = [0] * streams

    async def one(i: int) -> None:
        if ids:
            for part in id_pieces(service, i, tokens, chunk):
                answer = await service.append(opened[i], token_ids=part)
                judged[i] += len(answer["verdicts"])
            return
        for piece in answer_pieces(i, tokens, chunk):
            judged[i] += len((await service.append(opened[i], text=piece))["verdicts"])

    batches = service.metrics.value("stream_batch_size_count")
    rows = service.metrics.value("stream_batch_size_sum")
    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(streams)))
    seconds = time.perf_counter() - start
    batches = service.metrics.value("stream_batch_size_count") - batches
    rows = service.metrics.value("stream_batch_size_sum") - rows
    for s in opened:
        service.close(s.id)
    return {
        "streams": streams,
        "tokens": sum(judged),
        "seconds": round(seconds, 3),
        "tokens_per_s": round(sum(judged) / seconds, 1),
        "mean_streams_per_forward": round(rows / max(batches, 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--variant", default="int8")
    ap.add_argument("--streams", default="1,8")
    ap.add_argument("--tokens", type=int, default=96, help="answer tokens per stream")
    ap.add_argument("--chunk", type=int, default=8, help="words per append")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--token-ids",
        action="store_true",
        help="append token ids (--chunk ids a piece, as a generating model streams them) "
        "instead of text",
    )
    ap.add_argument(
        "--multi",
        default="rows",
        choices=["rows", "steps", "auto"],
        help="streams appending several tokens beside a cache (GroupQueryAttention pool): one "
        "row at a time, or as one-token forwards over the rows",
    )
    args = ap.parse_args()
    guard = load_guard(args.model, variant=args.variant)
    options = StreamOptions(max_batch=16, max_wait_ms=5.0)
    metrics = Metrics(streams=True)
    engine = guard.stream_engine()
    if hasattr(engine.forward_batch, "multi"):
        engine.forward_batch.multi = args.multi
    service = StreamService(engine, options, metrics)
    counts = [int(n) for n in args.streams.split(",")]
    results = []

    async def all_rounds() -> None:
        await run(service, 1, 16, args.chunk, args.token_ids)  # warm-up
        for _ in range(args.rounds):
            for n in counts:  # interleaved, so drift falls on every setting alike
                results.append(await run(service, n, args.tokens, args.chunk, args.token_ids))

    asyncio.run(all_rounds())
    service.stop()
    best = {n: max(r["tokens_per_s"] for r in results if r["streams"] == n) for n in counts}
    print(
        json.dumps(
            {
                "model": args.model,
                "variant": args.variant,
                "chunk": args.chunk,
                "token_ids": args.token_ids,
                "multi": args.multi,
                "batch": type(engine.forward_batch).__name__,
                "results": results,
                "best_tokens_per_s": best,
                "cpu": platform.processor() or platform.machine(),
                "load": os.getloadavg(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
