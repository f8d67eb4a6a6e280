"""How `guard classify --engine ray` scales from 1 to N actors on one Ray cluster.

Not part of CI. One Ray session (local on the usable CPUs, or --ray-address) runs the same JSONL
input with 1, 2, ..., N workers, each run into a fresh output folder, and reports wall time,
records/s and the speed-up over one worker. Wall time is the whole job as a user sees it: the
input count, actor start-up (one model load per actor), classify and shard writing. Every run is
checked: records in == records out.

    python benchmarks/ray_scaling.py --size full --variant int8 --records 2000 --max-workers 4
    python benchmarks/ray_scaling.py --model csam-guard --ray-address ray://head:10001 \\
        --input 's3://bucket/sample/*.jsonl' --output s3://bucket/bench --max-workers 32

The default model is the synthetic CSAM-Guard (random weights, real architecture), so the
verdicts mean nothing but the work per prompt is real.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

from guardcli.core.cpu import usable_cpus
from guardcli.jobs.ray import GuardSpec, classify_with_ray, connect
from guardcli.jobs.synthetic import synthetic_model

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples" / "prompts.jsonl"


def write_input(path: Path, records: int) -> Path:
    """`records` prompts cycled from the samples, each with a unique id."""
    texts = [json.loads(line)["text"] for line in SAMPLES.open()]
    with path.open("w") as out:
        for i in range(records):
            out.write(json.dumps({"id": f"b{i}", "text": texts[i % len(texts)]}) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="catalog name or folder; default: synthetic --size")
    parser.add_argument("--size", default="tiny", choices=("tiny", "full"))
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--input", help="JSONL/Parquet path or glob; default: --records samples")
    parser.add_argument("--output", help="folder or URL for the runs' shards; default: a temp dir")
    parser.add_argument("--max-workers", type=int, default=max(1, usable_cpus() - 1))
    parser.add_argument("--cpus-per-worker", type=float)
    parser.add_argument("--ray-address")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    model = args.model or str(synthetic_model(args.size))
    work = Path(tempfile.mkdtemp(prefix="guard-ray-bench-"))
    source = args.input or str(write_input(work / "in.jsonl", args.records))
    output = args.output or str(work / "out")
    started = connect(args.ray_address, quiet=True)
    rows = []
    try:
        for workers in range(1, args.max_workers + 1):
            start = time.perf_counter()
            result = classify_with_ray(
                source,
                f"{output.rstrip('/')}/workers-{workers}-{int(time.time())}",
                spec=GuardSpec(model=model, variant=args.variant),
                workers=workers,
                cpus_per_worker=args.cpus_per_worker,
                progress=False,
            )
            seconds = time.perf_counter() - start
            result.check()
            rows.append(
                {
                    "workers": workers,
                    "cpus_per_worker": result.cpus_per_worker,
                    "records": result.records_out,
                    "seconds": round(seconds, 2),
                    "records_per_s": round(result.records_out / seconds, 1),
                }
            )
            base = rows[0]["records_per_s"]
            row = rows[-1]
            print(
                f"{workers:>3} workers x {row['cpus_per_worker']:g} CPU  "
                f"{row['records']:>8} records  {seconds:8.1f} s  "
                f"{row['records_per_s']:8.1f} rec/s  x{row['records_per_s'] / base:.2f}",
                flush=True,
            )
    finally:
        if started:
            import ray

            ray.shutdown()
    if args.json:
        facts = {"machine": platform.processor() or platform.machine(), "cpus": usable_cpus()}
        args.json.write_text(json.dumps({"facts": facts, "model": model, "runs": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
