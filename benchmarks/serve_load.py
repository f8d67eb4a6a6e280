"""Load test for `guard serve`: N requests at concurrency C against /v1/moderations, every
answer checked against the guard run in-process on the same prompt (zero lost, zero mismatched),
with throughput and latency percentiles.

    python benchmarks/serve_load.py                          # tiny synthetic model, 2,000 x 32
    python benchmarks/serve_load.py --model DIR --variant int8 --max-batch 16,1
    python benchmarks/serve_load.py --url http://host:8080 --model DIR   # an already running server

The server runs as its own `guard serve` process, as deployed, so the load generator does not
share its interpreter.

Prints one JSON object per run on stdout; a summary line per run on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from guardcli import load_guard

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "data" / "samples" / "prompts.jsonl"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def load(url: str, texts: list[str], n: int, concurrency: int, key: str | None) -> dict:
    sem = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    answers: list[tuple[str, dict] | None] = [None] * n
    status: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as c:

        async def one(i: int) -> None:
            text = texts[i % len(texts)]
            async with sem:
                start = time.perf_counter()
                r = await c.post("/v1/moderations", json={"input": text})
                latencies.append(time.perf_counter() - start)
            status[r.status_code] = status.get(r.status_code, 0) + 1
            if r.status_code == 200:
                answers[i] = (text, r.json()["results"][0])

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        wall = time.perf_counter() - start
    return {"answers": answers, "latencies": latencies, "wall": wall, "status": status}


def run_once(args, url: str, texts: list[str], expected: dict[str, tuple[bool, float]]) -> dict:
    result = asyncio.run(load(url, texts, args.requests, args.concurrency, args.api_key))
    lost = sum(a is None for a in result["answers"])
    mismatched = 0
    for answer in result["answers"]:
        if answer is None:
            continue
        text, got = answer
        flagged, score = expected[text]
        got_score = next(iter(got["category_scores"].values()))
        if got["flagged"] != flagged or abs(got_score - score) > 1e-4:
            mismatched += 1
    lat = result["latencies"]
    return {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "lost": lost,
        "mismatched": mismatched,
        "status": result["status"],
        "seconds": round(result["wall"], 3),
        "requests_per_s": round(args.requests / result["wall"], 1),
        "p50_ms": round(1000 * statistics.median(lat), 1),
        "p99_ms": round(1000 * percentile(lat, 0.99), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="Model folder or catalog name. Default: a tiny synthetic.")
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-batch", default="16", help="Comma list: one run per value.")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--url", help="Load an already running server instead of starting one.")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args()

    texts = [json.loads(line)["text"] for line in PROMPTS.open(encoding="utf-8")]
    model = args.model
    if model is None:
        from guardcli.families.seqcls.synthetic import synth_csam_guard

        print("building a tiny synthetic CSAM-Guard ...", file=sys.stderr)
        model = str(synth_csam_guard(Path(tempfile.mkdtemp()) / "csam-guard-tiny", size="tiny"))
    guard = load_guard(model, variant=args.variant, threads=args.threads)
    expected = {
        v_text: (bool(v.flagged), float(v.score or 0.0))
        for v_text, v in zip(texts, guard.classify(texts), strict=True)
    }

    runs = []
    if args.url:
        runs.append({"url": args.url, **run_once(args, args.url, texts, expected)})
    else:
        for max_batch in (int(b) for b in args.max_batch.split(",")):
            with serve_process(args, model, max_batch) as url:
                stats = run_once(args, url, texts, expected)
                metrics = httpx.get(f"{url}/metrics", headers=_auth(args.api_key)).text
            runs.append(
                {
                    "max_batch": max_batch,
                    "max_wait_ms": args.max_wait_ms,
                    "mean_batch": _mean_batch(metrics),
                    **stats,
                }
            )
    for run in runs:
        run.update(model=guard.name, variant=guard.variant)
        print(json.dumps(run))
        print(
            f"max_batch={run.get('max_batch', '?')}: {run['requests']} requests at "
            f"{run['concurrency']}: {run['requests_per_s']} req/s, p50 {run['p50_ms']} ms, "
            f"p99 {run['p99_ms']} ms, mean batch {run.get('mean_batch', '?')}, "
            f"lost {run['lost']}, mismatched {run['mismatched']}",
            file=sys.stderr,
        )
    return 1 if any(r["lost"] or r["mismatched"] for r in runs) else 0


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


@contextlib.contextmanager
def serve_process(
    args, model: str, max_batch: int, extra: list[str] | None = None
) -> Iterator[str]:
    """`guard serve` in its own process (as deployed), on a free port; yields its URL."""
    cmd = [sys.executable, "-m", "guardcli", "serve", "-m", model, "--variant", args.variant]
    cmd += extra or []
    cmd += ["--port", "0", "--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    cmd += ["--max-queue", str(max(1024, 4 * args.concurrency)), "--log-level", "warning"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    if args.api_key:
        env["GUARD_API_KEY"] = args.api_key
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        if " on http://" not in line:
            raise SystemExit(f"guard serve did not start: {line}")
        url = line.split(" on ")[1].split()[0]
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("guard serve never became ready")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _mean_batch(metrics: str) -> float | None:
    values = {}
    for line in metrics.splitlines():
        for name in ("guard_batch_size_sum", "guard_batch_size_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[-1])
    if values.get("guard_batch_size_count"):
        return round(values["guard_batch_size_sum"] / values["guard_batch_size_count"], 2)
    return None


if __name__ == "__main__":
    raise SystemExit(main())
