"""`make bench`: the full-size runs BENCHMARKS.md records. Not part of CI; takes ~15-25 minutes
on a 2-core machine and wants the machine to itself (other load skews every figure).

Writes benchmarks/results/<UTC timestamp>/{guard-bench.json,compare-torch.json,cold-start.txt}
and prints the tables. With OpenVINO installed it first makes the ov-int8 variant.
The optimum baseline needs its own venv: see optimum_baseline.py.
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


def openvino_int8() -> str | None:
    """With OpenVINO installed, make the synthetic model's ov-int8 (NNCF, down_proj kept in float,
    as the card does) once, so `--variant all` times it too."""
    import importlib.util

    from guardcli.jobs.synthetic import synthetic_model

    if importlib.util.find_spec("openvino") is None:
        return None
    model = synthetic_model(SIZE)
    if not (model / "openvino" / "model_int8.xml").exists():
        run([sys.executable, "-m", "guardcli", "quantize", str(model), "--backend", "openvino"])
    return "ov-int8"


def cold_start(variant: str, path: Path) -> None:
    """`guard classify "one prompt" --timings` in a fresh process, three times: the first may
    build the optimized-graph or compiled-blob cache, the others are the cold start it buys."""
    from guardcli.jobs.synthetic import synthetic_model

    model = str(synthetic_model(SIZE))
    args = [sys.executable, "-m", "guardcli", "classify", "one prompt", "-m", model]
    args += ["--variant", variant, "--timings", "-q", "-f", "jsonl"]
    with open(path, "w") as handle:
        for _ in range(3):
            print("$ " + " ".join(args), file=sys.stderr, flush=True)
            done = subprocess.run(args, capture_output=True, text=True)
            handle.write(done.stderr)
            sys.stderr.write(done.stderr)


def main() -> int:
    out = HERE / "results" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    guard = [sys.executable, "-m", "guardcli", "bench", "--synthetic", "--size", SIZE]
    fastest = openvino_int8()
    common = ["--variant", "all", "--batch-size", "1,8,32", "--seq-len", "48"]
    run([*guard, *common, "--duration", DURATION, "--format", "json"], out / "guard-bench.json")
    compare = [sys.executable, str(HERE / "compare_torch.py"), "--size", SIZE]
    compare += ["--batch-size", "1,8", "--duration", DURATION, "--json"]
    run([*compare, str(out / "compare-torch.json")])
    cold_start(fastest or "int8", out / "cold-start.txt")
    print(f"results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
