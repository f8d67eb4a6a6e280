"""guard (ONNX FP32/INT8) against llama.cpp (GGUF F16/Q8_0) on the same Qwen3Guard-Gen weights.

Runs in the llama.cpp venv (README.md, setup.sh); guard runs in a child process per variant
(guard_worker.py in guard's own Python, loaded once through `load_guard`, driven over a pipe), so
both engines time the same prompts in ONE run, interleaved (prompt i: every engine in a
rotating order), on the same machine load. Batch 1: llama-cpp-python's `Llama` runs one
sequence; batch.py runs batch 8 through llama.cpp's low-level API.

Prompts: N prompt-moderation inputs rendered with guard's own template (families/qwen3guard_gen)
and tokenized by guard; llama.cpp gets the same token ids. The template head guard reuses
(its OnnxCausalLM.shared_prefix) is evaluated once per engine; per prompt llama.cpp rewinds to
the head's n_tokens (Llama.eval drops the KV cache past it) and evaluates only the tail.

Score mode: the tail + "Safety:"'s verdict prefix, the logits of the three severity tokens at
the last position (guard: `guard.lm.score_logits`, the call score mode makes, with its
restricted head); p50 ms per prompt; agreement = max |Δ probability| of the severities against
the reference row (guard ONNX FP32). Generate mode (`guard.lm.generate`, the call generate mode
makes; EOS off on both sides so every run decodes --new-tokens tokens): prefill = time to the
first new token, decode tokens/s = (n - 1) / (time of n tokens - time of 1), severities parsed
with guard's strict parser (random weights: mostly unparsable on every engine), and the share of
greedy token sequences equal to the reference's.

    .venv-llamacpp/bin/python benchmarks/llamacpp/compare.py MODEL_DIR \\
        --gguf f16=qg-f16.gguf --gguf q8_0=qg-q8_0.gguf --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# A pause before each timed call: the engine that ran last (another process) has its threads
# spinning for a moment after its work, which would land on the next engine's time.
SETTLE_S = 0.05
REPO = HERE.parents[1]


class GuardEngine:
    """The handle on one guard variant: guard_worker.py in guard's own Python."""

    def __init__(self, args, variant: str):
        runtime = "llama.cpp backend" if variant.startswith("gguf-") else "ONNX"
        self.name = f"guard {runtime} {variant.upper()}"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
        cmd = [args.guard_python, str(HERE / "guard_worker.py"), str(args.model), variant]
        cmd += ["--threads", str(args.threads)]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def ask(self, **cmd) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.name}: the guard worker exited ({self.proc.wait()})")
        return json.loads(line)

    def setup(self, n: int, tokens: int) -> dict:
        return self.ask(op="setup", n=n, tokens=tokens)

    def score(self, i: int) -> tuple[float, list[float]]:
        out = self.ask(op="score", i=i)
        return out["ms"], out["logits"]

    def generate(self, i: int, n: int) -> tuple[float, float, list[int]]:
        out = self.ask(op="generate", i=i, n=n)
        return out["prefill_ms"], out["total_ms"], out["tokens"]

    def close(self) -> float:
        rss = self.ask(op="rss")["peak_rss_mb"]
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait()
        return rss


# ---------------------------------------------------------------------- llama.cpp side


def extra_bufts_work(path: Path, threads: int) -> bool:
    """Whether llama.cpp's extra buffer types (AMX, repacked weights) run here: a child
    process evaluates a few tokens with them on. A VM can advertise AMX yet trap on its tile
    instructions (SIGILL), which would kill this process."""
    code = (
        "import sys; from llama_cpp import Llama; "
        f"m = Llama({str(path)!r}, n_ctx=64, n_threads={threads}, verbose=False); "
        "m.eval([1, 2, 3, 4])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    if proc.returncode not in (0, -signal.SIGILL):
        sys.stderr.write(proc.stderr.decode(errors="replace"))
        raise SystemExit(f"llama.cpp could not load {path} ({proc.returncode})")
    return proc.returncode == 0


class LlamaEngine:
    def __init__(self, label: str, path: Path, args, extra_bufts: bool, *, whole: bool = False):
        import llama_cpp
        import llama_cpp.llama_cpp as low

        self.name = f"llama.cpp {label.upper()}" + (" (whole prompt)" if whole else "")
        self.whole = whole
        self.llama_cpp = llama_cpp
        default_params = low.llama_model_default_params

        def params():
            p = default_params()
            p.use_extra_bufts = extra_bufts
            return p

        low.llama_model_default_params = params  # Llama() exposes no use_extra_bufts
        t0 = time.perf_counter()
        try:
            self.llm = llama_cpp.Llama(
                str(path),
                n_ctx=args.n_ctx,
                n_batch=512,
                n_threads=args.threads,
                n_threads_batch=args.threads,
                verbose=False,
            )
        finally:
            low.llama_model_default_params = default_params
        self.load_s = time.perf_counter() - t0
        self.n_vocab = self.llm.n_vocab()
        self.head: list[int] = []

    def set_head(self, head: list[int]) -> None:
        """Evaluate the template head once; its KV stays in the cache for every prompt."""
        self.llm.reset()
        if head:
            self.llm.eval(head)
        self.head = head

    def _tail(self, ids: list[int]) -> np.ndarray:
        n = len(self.head)
        assert ids[:n] == self.head
        self.llm.n_tokens = n  # rewind: eval() removes the KV cache past n_tokens
        self.llm.eval(ids[n:])
        return self._logits()

    def _logits(self) -> np.ndarray:
        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def score(self, ids: list[int], sev_ids: list[int]) -> tuple[float, list[float]]:
        t = time.perf_counter()
        row = self._tail(ids)[sev_ids].astype(float).tolist()
        return 1e3 * (time.perf_counter() - t), row

    def generate(self, ids: list[int], n: int) -> tuple[float, float, list[int]]:
        t = time.perf_counter()
        tok = int(np.argmax(self._tail(ids)))
        t1 = time.perf_counter()
        tokens = [tok]
        for _ in range(n - 1):
            self.llm.eval([tok])
            tok = int(np.argmax(self._logits()))
            tokens.append(tok)
        return 1e3 * (t1 - t), 1e3 * (time.perf_counter() - t1), tokens


# ---------------------------------------------------------------------- the run


def probabilities(logits: list[float]) -> np.ndarray:
    """Softmax over the severity tokens (guard's score_probabilities)."""
    x = np.array(logits, dtype=np.float64)
    e = np.exp(x - x.max())
    return e / e.sum()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path, help="guard's Qwen3Guard-Gen folder (onnx/ inside)")
    ap.add_argument("--gguf", action="append", default=[], help="LABEL=FILE (repeatable)")
    ap.add_argument(
        "--variant",
        default="fp32,int8",
        help="guard variants (first: reference); gguf-q8_0 / gguf-f16: guard's --backend "
        "llamacpp on MODEL_DIR/gguf-*/model.gguf",
    )
    ap.add_argument("--guard-python", default=str(REPO / ".venv" / "bin" / "python"))
    ap.add_argument("--prompts", type=int, default=16, help="score mode prompts")
    ap.add_argument("--generate-prompts", type=int, default=6, help="generate mode prompts")
    ap.add_argument("--tokens", type=int, default=377, help="tokens per rendered prompt")
    ap.add_argument("--new-tokens", type=int, default=24)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--n-ctx", type=int, default=1024)
    ap.add_argument(
        "--whole", action="append", default=[], help="LABEL: also time that GGUF without the head"
    )
    ap.add_argument("--extra-bufts", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--json", dest="json_out", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.gguf:
        ap.error("give at least one --gguf LABEL=FILE")
    load_start = os.getloadavg()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    guards = [GuardEngine(args, v) for v in args.variant.split(",")]
    setups = [g.setup(args.prompts, args.tokens) for g in guards]
    ref = setups[0]
    for s in setups[1:]:
        assert s["prompts"] == ref["prompts"] and s["head"] == ref["head"], "variants disagree"
    prompts, head = ref["prompts"], ref["head"]
    suffix, sev_ids = ref["suffix"], ref["severity_ids"]
    log(
        f"{len(prompts)} prompts of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
        f"head {len(head)} reused, +{len(suffix)} score suffix; {args.threads} threads"
    )
    llamas: list[LlamaEngine] = []
    bufts: dict[str, bool] = {}
    for spec in args.gguf:
        label, _, path = spec.partition("=")
        on = {"on": True, "off": False}.get(args.extra_bufts)
        if on is None:
            on = extra_bufts_work(Path(path), args.threads)
        bufts[label] = on
        log(f"llama.cpp {label}: {path} (extra buffer types {'on' if on else 'off'})")
        llamas.append(LlamaEngine(label, Path(path), args, on))
    for label in args.whole:  # the same GGUF without the head's KV: every token per prompt
        path = dict(spec.partition("=")[::2] for spec in args.gguf)[label]
        llamas.append(LlamaEngine(label, Path(path), args, bufts[label], whole=True))
    engines: list[Any] = [*guards, *llamas]
    for e in llamas:
        e.set_head([] if e.whole else head)

    def score(e, i):
        if isinstance(e, GuardEngine):
            return e.score(i)
        return e.score(prompts[i] + suffix, sev_ids)

    def generate(e, i, n):
        if isinstance(e, GuardEngine):
            return e.generate(i, n)
        return e.generate(prompts[i], n)

    for e in engines:  # warm-up, untimed: sessions, the head's KV on guard's side
        score(e, 0)
        generate(e, 0, 2)
    results: dict[str, dict[str, Any]] = {
        e.name: {"score_ms": [], "probs": [], "prefill_ms": [], "decode_ms": [], "tokens": []}
        for e in engines
    }
    for i in range(len(prompts)):
        k = i % len(engines)
        for e in engines[k:] + engines[:k]:
            time.sleep(SETTLE_S)
            ms, logits = score(e, i)
            results[e.name]["score_ms"].append(ms)
            results[e.name]["probs"].append(probabilities(logits).tolist())
        log(f"score {i + 1}/{len(prompts)}")
    for i in range(min(args.generate_prompts, len(prompts))):
        k = i % len(engines)
        for e in engines[k:] + engines[:k]:
            time.sleep(SETTLE_S)
            prefill, total, tokens = generate(e, i, args.new_tokens)
            r = results[e.name]
            r["prefill_ms"].append(prefill)
            r["decode_ms"].append(total)
            r["tokens"].append(tokens)
        log(f"generate {i + 1}/{args.generate_prompts}")

    reference = results[engines[0].name]
    ref_probs = np.array(reference["probs"])
    rows = []
    for e in engines:
        r = results[e.name]
        severities = guards[0].ask(op="judge", tokens=r["tokens"])["severities"]
        if e is engines[0]:
            ref_severities = severities
        steps = sum(len(t) - 1 for t in r["tokens"])
        row = {
            "engine": e.name,
            "score_p50_ms": statistics.median(r["score_ms"]),
            "score_max_abs_dprob": float(np.max(np.abs(np.array(r["probs"]) - ref_probs))),
            "prefill_p50_ms": statistics.median(r["prefill_ms"]) if r["prefill_ms"] else None,
            "decode_tok_s": steps / (sum(r["decode_ms"]) / 1e3) if r["decode_ms"] else None,
            # Per prompt, then the median: one prompt slowed by other work on the machine
            # moves the pooled rate above, not this one.
            "decode_p50_tok_s": statistics.median(
                (len(t) - 1) / (ms / 1e3) for t, ms in zip(r["tokens"], r["decode_ms"], strict=True)
            )
            if r["decode_ms"]
            else None,
            "generate_p50_ms": statistics.median(
                p + d for p, d in zip(r["prefill_ms"], r["decode_ms"], strict=True)
            )
            if r["decode_ms"]
            else None,
            "same_severity": float(
                np.mean([a == b for a, b in zip(severities, ref_severities, strict=True)])
            ),
            "same_tokens": float(
                np.mean([a == b for a, b in zip(r["tokens"], reference["tokens"], strict=True)])
            ),
            "severities": severities,
            "prefill_ms": r["prefill_ms"],
            "decode_ms": r["decode_ms"],
        }
        rows.append(row)
    peak = {g.name: g.close() for g in guards}
    report = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "load_before": load_start,
        "load_after": os.getloadavg(),
        "model": str(args.model),
        "guard_graphs": {g.name: s["graph"] for g, s in zip(guards, setups, strict=True)},
        "guard_peak_rss_mb": peak,
        "gguf": dict(spec.partition("=")[::2] for spec in args.gguf),
        "llamacpp_extra_buffer_types": bufts,
        "llama_cpp_version": __import__("llama_cpp").__version__,
        "prompts": len(prompts),
        "prompt_tokens": [len(p) for p in prompts],
        "head_tokens": len(head),
        "score_suffix_tokens": len(suffix),
        "generate_prompts": min(args.generate_prompts, len(prompts)),
        "new_tokens": args.new_tokens,
        "batch_size": 1,
        "rows": rows,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0


def markdown(report: dict) -> str:
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    lines = [
        f"CPU: {report['cpu']} ({report['threads']} threads); load {report['load_before'][0]:.2f}"
        f" before, {report['load_after'][0]:.2f} after; {report['prompts']} prompts of "
        f"{min(report['prompt_tokens'])}-{max(report['prompt_tokens'])} tokens, template head "
        f"{report['head_tokens']} tokens reused by both engines; batch 1; generate: "
        f"{report['generate_prompts']} prompts x {report['new_tokens']} new tokens.",
        "",
        "| engine | score p50 ms | score max abs dP vs first row | prefill p50 ms | "
        "decode tokens/s | decode tokens/s p50 | generate p50 ms | same severity | same tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['engine']} | {num(r['score_p50_ms'], ',.0f')} | "
            f"{num(r['score_max_abs_dprob'], '.2e')} | {num(r['prefill_p50_ms'], ',.0f')} | "
            f"{num(r['decode_tok_s'], '.1f')} | {num(r.get('decode_p50_tok_s'), '.1f')} | "
            f"{num(r['generate_p50_ms'], ',.0f')} | "
            f"{r['same_severity']:.0%} | {r['same_tokens']:.0%} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
