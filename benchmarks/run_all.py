"""`make bench`: the full-size runs BENCHMARKS.md records. Not part of CI; takes ~15-25 minutes
on a 2-core machine and wants the machine to itself (other load skews every figure).

Writes benchmarks/results/<UTC timestamp>/{guard-bench.json,compare-torch.json} and prints the
tables. The optimum baseline needs its own venv: see optimum_baseline.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZE = os.environ.get("BENCH_SIZE", "full")
DURATION = os.environ.get("BENCH_DURATION", "20")


def run(args: list[str], stdout_to: Path | None = None) -> None:
    print("$ " + " ".join(args), file=sys.stderr, flush=True)
    if stdout_to is None:
        subprocess.run(args, check=True)
    else:
        with open(stdout_to, "w") as handle:
            subprocess.run(args, check=True, stdout=handle)


def main() -> int:
    out = HERE / "results" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    guard = [sys.executable, "-m", "guardcli", "bench", "--synthetic", "--size", SIZE]
    common = ["--variant", "all", "--batch-size", "1,8,32", "--seq-len", "48"]
    run([*guard, *common, "--duration", DURATION, "--format", "json"], out / "guard-bench.json")
    compare = [sys.executable, str(HERE / "compare_torch.py"), "--size", SIZE]
    compare += ["--batch-size", "1,8", "--duration", DURATION, "--json"]
    run([*compare, str(out / "compare-torch.json")])
    print(f"results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
