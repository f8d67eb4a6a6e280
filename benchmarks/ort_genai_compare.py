"""onnxruntime-genai against guardcli's own ONNX KV-cache decoder, on the same causal LM.

Issue 8 asks whether onnxruntime-genai serves Qwen3Guard-Gen better than our OnnxCausalLM
(runtime/causal_lm.py). Not part of CI, and not run in the guardcli venv: onnxruntime-genai is
no guardcli dependency and its builder's needs (torch, transformers, onnx-ir) move with each
release, so it gets a venv of its own (torch first, as the local CPU wheel, so pip never
resolves a CUDA torch):

    .venv/bin/guard synth qwen3guard-gen --size full --out models/qwen3guard-gen-full
    python3.11 -m venv .venv-genai
    .venv-genai/bin/pip install torch==2.13.0      # the CPU wheel first, as `make` does
    .venv-genai/bin/pip install -r benchmarks/requirements-genai.txt -e .
    # the builder reads the local folder (never the hub) and writes genai's folder + config
    for p in fp32 int4; do
      .venv-genai/bin/python -m onnxruntime_genai.models.builder -i models/qwen3guard-gen-full \\
        -o models/qwen3guard-gen-full-genai-$p -p $p -e cpu -c /tmp/genai-cache \\
        --extra_options prune_lm_head=true
    done
    .venv-genai/bin/python benchmarks/ort_genai_compare.py models/qwen3guard-gen-full \\
        --genai fp32=models/qwen3guard-gen-full-genai-fp32 \\
        --genai int4=models/qwen3guard-gen-full-genai-int4 --json genai.json

Each backend runs in a child process (so peak RSS is its own), one after the other on the same
prompts: Qwen3Guard-Gen's template rendered by guardcli, tokenized with the model's tokenizer.
Measured per backend: load time; greedy tokens and first-step (next-token) logits for a few
prompts, compared with ours FP32; prefill seconds for one rendered prompt (batch 1 and 4,
left-padded); decode tokens/s over a fixed number of new tokens (EOS disabled in both, since a
random-weight model may never emit it); peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Short contents: the template's head and tail alone are ~295 tokens (spec §2).
CONTENTS = [
    [{"role": "user", "content": "How do I repot a lemon tree without hurting its roots?"}],
    [{"role": "user", "content": "Write a short poem about a lighthouse in winter."}],
    [
        {"role": "user", "content": "Can you help me plan a bicycle trip along the river?"},
        {"role": "assistant", "content": "Sure: start at the harbor and follow the towpath."},
    ],
    [{"role": "user", "content": "What is a good recipe for a rainy morning?"}],
]


def rendered_prompts(model_dir: Path) -> list[list[int]]:
    from tokenizers import Tokenizer

    from guardcli.families.qwen3guard_gen.format import packaged_template, render

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    template = packaged_template()
    return [
        tokenizer.encode(render(conv, template), add_special_tokens=False).ids for conv in CONTENTS
    ]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Ours:
    """guardcli's OnnxCausalLM; EOS disabled so every run decodes exactly `new` tokens."""

    def __init__(self, model_dir: Path, threads: int):
        from guardcli.runtime.causal_lm import OnnxCausalLM

        self.lm = OnnxCausalLM(model_dir / "onnx" / "model.onnx", model_dir, threads=threads)
        self.lm.eos_ids = []

    def first_logits(self, prompts):
        return self.lm.next_logits(prompts)

    def generate(self, prompts, new):
        return self.lm.generate(prompts, new)


class Genai:
    """onnxruntime-genai's Generator: append_tokens runs the prefill, generate_next_token picks
    a token (and runs one decode step for every token after the first)."""

    def __init__(self, folder: Path, threads: int, pad_id: int):
        import onnxruntime_genai as og

        self.og = og
        config = og.Config(str(folder))
        options = {"intra_op_num_threads": threads, "inter_op_num_threads": 1}
        config.overlay(json.dumps({"model": {"decoder": {"session_options": options}}}))
        self.model = og.Model(config)
        self.pad_id = pad_id

    def _generator(self, prompts, new):
        from guardcli.runtime.causal_lm import left_pad

        ids, _ = left_pad(prompts, self.pad_id)
        params = self.og.GeneratorParams(self.model)
        total = ids.shape[1] + new
        params.set_search_options(
            do_sample=False, max_length=total, min_length=total, batch_size=len(prompts)
        )
        gen = self.og.Generator(self.model, params)
        return gen, ids.astype(np.int32)

    def first_logits(self, prompts):
        gen, ids = self._generator(prompts, 1)
        gen.append_tokens(ids)
        return np.asarray(gen.get_logits(), dtype=np.float32).reshape(len(prompts), -1)

    def generate(self, prompts, new):
        gen, ids = self._generator(prompts, new)
        gen.append_tokens(ids)
        for _ in range(new):
            gen.generate_next_token()
        return [
            [int(t) for t in gen.get_sequence(row)[ids.shape[1] :]] for row in range(len(prompts))
        ]


def worker(args) -> int:
    """One backend in this process: correctness outputs (round 0 only), then one timed run per
    batch size."""
    model_dir = Path(args.model_dir)
    out_dir = Path(args.out_dir)
    prompts = rendered_prompts(model_dir)
    from guardcli.runtime.causal_lm import stop_ids

    start = time.perf_counter()
    if args.worker == "ours":
        backend = Ours(model_dir, args.threads)
    else:
        backend = Genai(Path(args.worker_path), args.threads, stop_ids(model_dir)[0])
    result: dict = {"load_s": time.perf_counter() - start, "rss_after_load_mb": peak_rss_mb()}
    result["prompt_tokens"] = [len(p) for p in prompts]
    if args.round == 0:
        result["greedy"] = [backend.generate([p], args.new_tokens)[0] for p in prompts[:3]]
        single = np.concatenate([backend.first_logits([p]) for p in prompts[:3]])
        np.save(out_dir / "logits_b1.npy", single)
        np.save(out_dir / "logits_b3.npy", backend.first_logits(prompts[:3]))  # left-padded
    else:
        backend.first_logits(prompts[:1])  # warm-up, untimed
    for batch in args.batch_sizes:
        batch_prompts = (prompts * batch)[:batch]
        t0 = time.perf_counter()
        backend.first_logits(batch_prompts)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        tokens = backend.generate(batch_prompts, args.new_tokens)
        total = time.perf_counter() - t0
        assert all(len(t) == args.new_tokens for t in tokens), tokens
        steps = args.new_tokens - 1  # the first new token comes from the prefill's logits
        result[f"b{batch}"] = {
            "prefill_s": prefill,
            "generate_s": total,
            "decode_tok_s": batch * steps / max(total - prefill, 1e-9),
            "tokens": tokens,
        }
    result["peak_rss_mb"] = peak_rss_mb()
    (out_dir / "result.json").write_text(json.dumps(result))
    return 0


def run_worker(args, name: str, path: str, out_dir: Path, round_: int) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, __file__, str(args.model_dir), "--worker", name, "--out-dir"]
    cmd += [str(out_dir), "--worker-path", path, "--threads", str(args.threads)]
    cmd += ["--new-tokens", str(args.new_tokens), "--round", str(round_)]
    cmd += ["--batch-size", ",".join(map(str, args.batch_sizes))]
    print(f"round {round_}: {name} {path}", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)
    return json.loads((out_dir / "result.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="guard synth qwen3guard-gen folder")
    parser.add_argument("--genai", action="append", default=[], help="LABEL=FOLDER (builder out)")
    parser.add_argument("--batch-size", default="1,4")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument(
        "--rounds", type=int, default=2, help="timed runs per backend, interleaved (medians)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", dest="json_out", default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-path", default="", help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_size.split(",")]
    if args.threads is None:
        from guardcli.core.cpu import usable_cpus

        args.threads = usable_cpus()
    if args.worker:
        return worker(args)

    import onnxruntime
    import onnxruntime_genai

    from guardcli.jobs.bench.runner import machine_info

    report: dict = {
        "machine": machine_info(args.threads),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "genai": onnxruntime_genai.__version__,
        },
        "new_tokens": args.new_tokens,
        "rounds": args.rounds,
        "backends": {},
    }
    runs = [("ours", "")] + [tuple(g.split("=", 1)) for g in args.genai]
    results: dict[str, list[dict]] = {label: [] for label, _ in runs}
    logits = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Round-robin, so a burst of load from other processes hits every backend alike.
        for round_ in range(args.rounds):
            for label, path in runs:
                out_dir = Path(tmp) / f"{label}-{round_}"
                name = "ours" if label == "ours" else "genai"
                results[label].append(run_worker(args, name, path, out_dir, round_))
                if round_ == 0:
                    logits[label] = [np.load(out_dir / f"logits_{b}.npy") for b in ("b1", "b3")]
    ref = logits["ours"][0]
    for label, rounds in results.items():
        first = rounds[0]
        r: dict = {
            "load_s": statistics.median(x["load_s"] for x in rounds),
            "peak_rss_mb": max(x["peak_rss_mb"] for x in rounds),
            "prompt_tokens": first["prompt_tokens"],
            "greedy": first["greedy"],
        }
        single, batched = logits[label]
        r["logits_max_abs_diff_vs_ours_b1"] = float(np.abs(single - ref).max())
        r["logits_max_abs_diff_b3_vs_b1"] = float(np.abs(batched - single).max())
        r["argmax_equal_vs_ours"] = bool((single.argmax(-1) == ref.argmax(-1)).all())
        r["greedy_equal_vs_ours"] = [
            a == b for a, b in zip(first["greedy"], results["ours"][0]["greedy"], strict=True)
        ]
        for b in args.batch_sizes:
            key = f"b{b}"
            ours = results["ours"]
            r[key] = {
                "prefill_s": statistics.median(x[key]["prefill_s"] for x in rounds),
                "decode_tok_s": statistics.median(x[key]["decode_tok_s"] for x in rounds),
                # Paired with ours' run of the same round: least distorted by a shared machine.
                "prefill_speedup_vs_ours": statistics.median(
                    o[key]["prefill_s"] / x[key]["prefill_s"]
                    for o, x in zip(ours, rounds, strict=True)
                ),
                "decode_speedup_vs_ours": statistics.median(
                    x[key]["decode_tok_s"] / o[key]["decode_tok_s"]
                    for o, x in zip(ours, rounds, strict=True)
                ),
                "tokens_equal_vs_ours": first[key]["tokens"] == ours[0][key]["tokens"],
                "runs": [
                    {k: x[key][k] for k in ("prefill_s", "generate_s", "decode_tok_s")}
                    for x in rounds
                ],
            }
        report["backends"][label] = r
    print_table(report, args.batch_sizes)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def print_table(report: dict, batch_sizes: list[int]) -> None:
    ours = report["backends"]["ours"]
    head = f"{'backend':<10} {'load s':>7} {'peak MB':>8} {'max|dlogit|':>11} {'greedy=':>7}"
    for b in batch_sizes:
        head += f" {f'b{b} prefill s':>13} {f'b{b} tok/s':>9} {'x ours':>10}"
    print(f"prompt tokens {ours['prompt_tokens']}, {report['new_tokens']} new tokens")
    print(head)
    for label, r in report["backends"].items():
        line = (
            f"{label:<10} {r['load_s']:>7.1f} {r['peak_rss_mb']:>8.0f} "
            f"{r['logits_max_abs_diff_vs_ours_b1']:>11.2e} "
            f"{sum(r['greedy_equal_vs_ours'])}/{len(r['greedy']):<5}"
        )
        for b in batch_sizes:
            x = r[f"b{b}"]
            line += f" {x['prefill_s']:>13.2f} {x['decode_tok_s']:>9.1f}"
            line += f" {x['prefill_speedup_vs_ours']:>5.2f}/{x['decode_speedup_vs_ours']:.2f}"
        print(line)
    print(
        "x ours = speed-up over ours, prefill/decode, median of per-round ratios (above 1: faster)"
    )


if __name__ == "__main__":
    sys.exit(main())
