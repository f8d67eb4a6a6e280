"""The default a user would reach for: optimum's ORTModelForSequenceClassification + pipeline.

Not part of CI, and not run in the guardcli venv: optimum-onnx pins transformers<4.58, so it
needs a venv of its own (see requirements-optimum.txt). Build the model with the main venv
first, then point this script at it; it reads the same ONNX files guard runs:

    .venv/bin/guard synth csam-guard --size full --out models/csam-guard-full
    .venv-optimum/bin/python benchmarks/optimum_baseline.py models/csam-guard-full \\
        --variant fp32 --batch-size 1,8,32 --duration 20

Prompts are the same synthetic N-token prompts `guard bench --seq-len N` uses (same seed).
Figures are end to end (the pipeline tokenizes, pads, runs and post-processes), which is how
a pipeline user sees them; compare with guard bench's e2e_* columns.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.tokenize import TextTokenizer
from guardcli.jobs.bench.report import percentile
from guardcli.jobs.bench.runner import machine_info, synthetic_prompts

ROOT_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def staged(model_dir: Path, variant: str, into: Path) -> Path:
    """A folder optimum can load: the variant's graph (and external data) beside the config and
    tokenizer, as symlinks."""
    graph = model_dir / ONNX_VARIANT_FILES[variant]
    for name in ROOT_FILES:
        if (model_dir / name).exists():
            (into / name).symlink_to((model_dir / name).resolve())
    (into / "model.onnx").symlink_to(graph.resolve())
    for suffix in ("_data", ".data"):
        data = graph.with_name(graph.name + suffix)
        if data.exists():  # the graph refers to its data by this file name
            (into / data.name).symlink_to(data.resolve())
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--variant", default="fp32", choices=tuple(ONNX_VARIANT_FILES))
    parser.add_argument("--batch-size", default="1,8,32")
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args(argv)

    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    machine = machine_info(args.threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads = machine["threads"]
    sizes = [int(b) for b in args.batch_size.split(",")]
    texts = synthetic_prompts(
        TextTokenizer(args.model_dir, max(384, args.seq_len)), args.seq_len, max(64, 2 * max(sizes))
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = staged(args.model_dir, args.variant, Path(tmp))
        start = time.perf_counter()
        model = ORTModelForSequenceClassification.from_pretrained(
            folder, file_name="model.onnx", provider="CPUExecutionProvider", session_options=options
        )
        load_s = time.perf_counter() - start
        tokenizer = AutoTokenizer.from_pretrained(folder)
        classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
        for size in sizes:
            batch = texts[:size]
            classify(batch, batch_size=size)  # warm-up
            times = []
            deadline = time.perf_counter() + args.duration
            while not times or time.perf_counter() < deadline:
                t0 = time.perf_counter()
                classify(batch, batch_size=size)
                times.append(time.perf_counter() - t0)
            prompts = size * len(times)
            rows.append(
                {
                    "path": f"optimum-pipeline-{args.variant}",
                    "batch_size": size,
                    "prompts_per_s": prompts / sum(times),
                    "tokens_per_s": prompts * args.seq_len / sum(times),
                    "batch_p50_ms": percentile([1000 * t for t in times], 50),
                    "batches": len(times),
                    "load_s": load_s,
                }
            )
            print(json.dumps(rows[-1]))
    if args.json_out:
        report = {"machine": machine, "settings": vars(args) | {"model_dir": str(args.model_dir)}}
        Path(args.json_out).write_text(json.dumps(report | {"results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
