"""Interleaved side-by-side timing of model variants on this machine.

Each variant runs in a worker process of its own (`bench_worker.py`), loaded once and warmed up.
The parent then hands out time slices in rounds, A B C, B C A, C A B, ..., one worker at a time,
so slow drift of the machine (thermal, other tenants) falls on every variant alike instead of on
whichever ran last. Every batch goes through the real classify path (render, tokenize, bucket,
pad, model, postprocess); the model call the family names (`Guard.runtime_calls`: an onnxruntime
session, greedy generation, a torch forward pass) is timed separately, which gives the
model-only figures (`prompts_per_s`, `tokens_per_s`, latencies) and the end-to-end ones
(`e2e_*`). A family with several ways to run (qwen3guard-gen: generation and score mode) gets
rows of each `mode`, from the same loaded model.
With real prompts of mixed lengths, every variant walks them in the same order from the start;
a faster variant gets further through them in the same time, which evens out over a long run.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from guardcli import __version__
from guardcli.core import cpu, registry
from guardcli.core.cpu import cpu_flags, usable_cpus
from guardcli.core.errors import ExitCode, GuardError, input_error
from guardcli.core.resolve import local_family, present_variants
from guardcli.core.synthetic import is_synthetic
from guardcli.core.variants import (
    ALL_VARIANTS,
    LORA_VARIANT,
    NATIVE_BF16_FLAGS,
    TORCH_VARIANT,
    backend_of,
    with_backend,
)
from guardcli.jobs.bench.report import DEFINITIONS, add_agreement, add_ratios, make_row
from guardcli.runtime.onnx_recipes import model_size

AGREEMENT_PROMPTS = 32  # prompts every variant judges once, to compare with the reference
# Paths run with torch: a causal LM checkpoint (qwen3guard-gen), an OpenCC LoRA adapter + head.
TORCH_PATHS = (TORCH_VARIANT, LORA_VARIANT)
BENCH_VARIANTS = (*ALL_VARIANTS, *TORCH_PATHS)
DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_SEQ_LEN = 48
DEFAULT_DURATION = 10.0
MAX_ROUNDS = 5
MIN_SLICE_S = 0.5


@dataclass
class BenchConfig:
    model_dir: Path
    variants: Sequence[str] = ("fp32", "fp16", "int8")
    modes: Sequence[str] = ()  # for families with several (qwen3guard-gen); () = all of them
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    seq_len: int | None = None  # synthetic prompts of this many tokens; default when no data
    data: Path | None = None  # real prompts, JSONL (text or prompt field) or plain lines
    threads: int | None = None
    duration: float = DEFAULT_DURATION  # seconds per variant x batch size
    price_per_hour: float | None = None
    seed: int = 0
    agreement_prompts: int = AGREEMENT_PROMPTS  # judged once by every variant, for agreement
    extra: dict[str, Any] = field(default_factory=dict)  # copied into the report's `model`
    dtype: str | None = None  # torch paths (--dtype); None: auto


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise input_error(f"--{what} is empty.", hint=f"Give a comma-separated list for --{what}.")
    return items


def runtime_of(variant: str) -> str:
    return "torch" if variant in TORCH_PATHS else backend_of(variant)


def load_options(variant: str, dtype: str | None = None) -> dict[str, Any]:
    """`load_guard` arguments that run `variant` (torch: the checkpoint beside any graph);
    `dtype` goes to the torch paths only (ONNX variants have their own precision)."""
    options: dict[str, Any] = {"variant": variant}
    if variant == TORCH_VARIANT:
        options = {"variant": "auto", "backend": "torch"}
    if dtype is not None and variant in TORCH_PATHS:
        options["dtype"] = dtype
    return options


def model_variants(model_dir: Path) -> list[str]:
    """The paths a model folder holds that this install can time: its ONNX and OpenVINO files;
    a generative guard's exported graph and its checkpoint (torch); an OpenCC adapter (lora)."""

    model_dir = Path(model_dir)
    family = registry.folder_family(model_dir)
    if family.variants is not None:
        return list(registry.load(family.variants)(model_dir))
    return present_variants(model_dir)


def parse_variants(text: str, present: Sequence[str], backend: str | None = None) -> list[str]:
    """'all' or a comma list; FP32 first, since the ratios are taken to it. With `backend`,
    names map to that runtime's paths (fp32 -> ov-fp32 on openvino, fp32 -> the checkpoint on
    torch) and 'all' keeps its own."""
    everything = text.strip() == "all"
    if everything:
        wanted = [v for v in present if backend is None or runtime_of(v) == backend]
    else:
        wanted = parse_list(text, "variant")
    unknown = [v for v in wanted if v not in BENCH_VARIANTS]
    if unknown:
        raise input_error(
            f"Unknown variant {unknown[0]!r}.",
            hint=f"Choose from: {', '.join(BENCH_VARIANTS)}, all.",
        )
    if not wanted:
        on = f" on {backend}" if backend else ""
        raise GuardError(
            f"The model has no variant to benchmark{on} (found: {', '.join(present) or 'none'}).",
            hint="guard bench times ONNX and OpenVINO graphs, and with torch a qwen3guard-gen "
            "checkpoint or an OpenCC adapter. Make a graph with `guard export` or "
            "`guard quantize`, or pick another --backend.",
        )
    if backend == "torch":
        wanted = [_on_torch(v, present) for v in wanted]
    elif not everything:
        wanted = [with_backend(v, backend) for v in wanted]
        wrong = [v for v in wanted if backend is not None and runtime_of(v) != backend]
        if wrong:
            raise input_error(f"The {wrong[0]} variant does not run on {backend}.")
    missing = [v for v in wanted if v not in present]
    if missing:
        torch_only = bool(present) and all(v in TORCH_PATHS for v in present)
        raise GuardError(
            f"The model has no {missing[0]} variant (found: {', '.join(present) or 'none'}).",
            hint="It runs with torch only: use --variant all."
            if torch_only
            else "Pick variants that are there with --variant, or make one with `guard quantize`.",
        )
    return sorted(dict.fromkeys(wanted), key=BENCH_VARIANTS.index)


def without_emulated(variants: list[str], flags: set[str]) -> tuple[list[str], list[str]]:
    """(kept, left out): `--variant all` leaves out the paths this CPU would only emulate, the
    bf16 hint without native bf16, which takes minutes a batch for a 0.6B model. Named with
    --variant, they run."""

    emulated = [] if flags & NATIVE_BF16_FLAGS else [v for v in variants if v == "bf16"]
    return [v for v in variants if v not in emulated], emulated


def _on_torch(variant: str, present: Sequence[str]) -> str:
    """The torch path that `--backend torch --variant V` means: the model's own for fp32."""
    paths = [v for v in present if v in TORCH_PATHS]
    if variant in TORCH_PATHS:
        return variant
    if variant == "fp32" and paths:
        return paths[0]
    raise input_error(
        f"The {variant} variant does not run on torch.",
        hint=f"On torch choose: {', '.join(paths) or 'none (this model has no torch path)'}.",
    )


def parse_modes(text: str | None, modes: Sequence[str], family: str) -> list[str]:
    """The family's modes to time, in its order; all of them when `text` is None."""
    if text is None:
        return list(modes)
    wanted = parse_list(text, "mode")
    if not modes:
        raise input_error(
            f"--mode does not apply to the {family} family: it runs one way.",
            hint="--mode generate,score is for generative guards (qwen3guard-gen); drop it.",
        )
    unknown = [m for m in wanted if m not in modes]
    if unknown:
        raise input_error(f"Unknown mode {unknown[0]!r}.", hint=f"Choose from: {', '.join(modes)}.")
    return sorted(dict.fromkeys(wanted), key=list(modes).index)


def family_modes(model_dir: Path) -> tuple[str, tuple[str, ...]]:
    """(family, its modes) of a model folder, without loading anything."""
    from guardcli.families import get_family

    model_dir = Path(model_dir)
    family = local_family(model_dir)
    return family, get_family(family).modes


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in parse_list(text, "batch-size")]
    except ValueError:
        raise input_error(
            f"--batch-size {text!r} is not a list of whole numbers.",
            hint="e.g. --batch-size 1,8,32",
        ) from None
    if any(s < 1 for s in sizes):
        raise input_error("Batch sizes must be at least 1.")
    return list(dict.fromkeys(sizes))


# ---------------------------------------------------------------- prompts

# Common words that the Qwen3 tokenizer keeps as one token each (with their leading space), so a
# prompt grows one token per word and lands on the requested length.
_WORDS = (
    "the of and to in is for on that with as it at by from this be are was or an have not "
    "you all can more one new time but will about if has they which their so up out some what "
    "other when there into only also any after over first two may these like how most such "
    "then many see way back made them well good three people year day where must work through "
    "water light city house night world river boat garden winter paper music color market"
).split()


def synthetic_prompts(tokenizer, seq_len: int, count: int, seed: int = 0) -> list[str]:
    """`count` distinct prompts that each tokenize to `seq_len` tokens (special tokens included)
    where the words allow it, else as close as they come below."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        words: list[str] = []
        text = ""
        for _ in range(seq_len * 2 + 8):
            candidate = " ".join([*words, rng.choice(_WORDS)])
            if len(tokenizer.encode([candidate])[0].ids) > seq_len:
                break
            words.append(candidate.rsplit(" ", 1)[-1])
            text = candidate
        prompts.append(text or rng.choice(_WORDS))
    return prompts


def read_prompts(path: Path, limit: int = 10_000) -> list[str]:
    """Texts from JSONL (the `text` or `prompt` field) or plain lines; blank lines skipped."""
    from guardcli.core.records import ReadOptions, read_lines

    if str(path) == "-":  # stdin, as every command reads it; left open for the caller
        source: Any = contextlib.nullcontext(sys.stdin.buffer)
    else:
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise input_error(f"Cannot read {path}: {exc.strerror}.") from None
    with source as handle:
        texts = [r.text for r in read_lines(handle, ReadOptions()) if r.text]
    if not texts:
        raise input_error(
            f"{path} has no prompts.", hint="One prompt per line, or JSONL with text."
        )
    return texts[:limit]


# ---------------------------------------------------------------- machine and model


def machine_info(threads: int | None = None) -> dict[str, Any]:

    arch, flags = cpu_flags()
    known = tuple(getattr(cpu, "X86_FEATURES", ())) + tuple(getattr(cpu, "ARM_FEATURES", ()))
    model = platform.processor() or arch
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    from importlib.metadata import PackageNotFoundError, version

    try:
        ov_version: str | None = version("openvino")
    except PackageNotFoundError:
        ov_version = None
    usable = usable_cpus()
    return {
        "cpu_model": model,
        "arch": arch,
        "features": sorted(f for f in flags if f in known),
        "usable_cores": usable,
        "threads": threads or usable,
        "onnxruntime": ort_version,
        "openvino": ov_version,
        "guardcli": __version__,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def weights_size(files: Sequence[Path]) -> int:
    """Bytes of a variant's weight files on disk, an ONNX graph's external data (or an
    OpenVINO IR's .bin) included."""

    return sum(model_size(f) if f.suffix in (".onnx", ".xml") else f.stat().st_size for f in files)


# ---------------------------------------------------------------- workers


class _WorkerProcess:
    """The parent's handle on one `bench_worker` process."""

    def __init__(self, variant: str):
        self.variant = variant
        env = dict(os.environ)
        src = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        self.log: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "guardcli.jobs.bench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
        )

    def ask(self, **msg: Any) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        reply = json.loads(line) if line else {"ok": False, "error": self._stderr_tail()}
        if not reply.get("ok"):
            raise GuardError(
                f"Benchmark worker for {self.variant} failed: {reply.get('error')}",
                hint="Rerun with fewer variants or smaller batches; GUARD_DEBUG=1 shows more.",
                code=ExitCode.MODEL,
            )
        return reply

    def _stderr_tail(self) -> str:
        self.proc.wait(timeout=10)
        self.log.seek(0)
        tail = self.log.read().decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"exit code {self.proc.returncode}: " + (" | ".join(tail) or "no output")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


# ---------------------------------------------------------------- run


def rounds_for(duration: float) -> int:
    """Enough rounds for drift to cancel, each slice long enough to hold a few batches."""
    return max(1, min(MAX_ROUNDS, int(duration / MIN_SLICE_S)))


def run_bench(config: BenchConfig, progress: Callable[[str], None] = lambda _: None) -> dict:
    """Benchmark `config.variants` x `config.batch_sizes` (x the family's modes); the JSON-ready
    report."""
    from guardcli.families.loader import load_guard

    model_dir = Path(config.model_dir)
    variants = list(config.variants)
    # Guards that are not loaded (no session, no torch model): files, tokenizer and defaults.
    guards = {v: load_guard(model_dir, **load_options(v, config.dtype)) for v in variants}
    first = guards[variants[0]]
    modes: list[str | None] = [
        *parse_modes(",".join(config.modes) if config.modes else None, first.modes, first.family)
    ] or [None]
    default_len = first.max_length
    if config.data is not None:
        texts = read_prompts(config.data)
        max_length = default_len
        prompt_source: dict[str, Any] = {"data": str(config.data), "prompts": len(texts)}
    else:
        seq_len = config.seq_len or DEFAULT_SEQ_LEN
        if seq_len < 2:
            raise input_error("--seq-len must be at least 2 (one word and the end token).")
        max_length = max(default_len, seq_len)
        tokenizer = load_guard(
            model_dir, **load_options(variants[0]), max_length=max_length
        ).tokenizer
        count = max(64, 2 * max(config.batch_sizes))
        texts = synthetic_prompts(tokenizer, seq_len, count, config.seed)
        prompt_source = {"seq_len": seq_len, "prompts": len(texts)}

    rounds = rounds_for(config.duration)
    workers: dict[str, _WorkerProcess] = {}
    setup: dict[str, dict[str, Any]] = {}
    batches: dict[tuple[str, str | None, int], list[list[float]]] = {}
    try:
        for variant in variants:  # one at a time, so load times do not contend
            progress(f"loading {variant}")
            workers[variant] = _WorkerProcess(variant)
            setup[variant] = workers[variant].ask(
                cmd="setup",
                model_dir=str(model_dir),
                variant=variant,
                dtype=config.dtype,
                threads=config.threads,
                max_length=max_length,
                texts=texts,
                warmup=list(config.batch_sizes),
                modes=modes,
                agreement=config.agreement_prompts,
            )
        slice_s = config.duration / rounds
        order = list(variants)
        for r in range(rounds):
            for size in config.batch_sizes:
                for mode in modes:
                    for variant in order:
                        what = f"{variant} ({mode})" if mode else variant
                        progress(f"round {r + 1}/{rounds}: {what} at batch {size}")
                        got = workers[variant].ask(
                            cmd="run", batch_size=size, seconds=slice_s, mode=mode
                        )
                        batches.setdefault((variant, mode, size), []).extend(got["batches"])
                    order = order[1:] + order[:1]  # A B C, then B C A: no variant always last
        peaks = {v: w.ask(cmd="stop").get("peak_rss_mb") for v, w in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()

    sizes = {v: weights_size(g.weight_files()) for v, g in guards.items()}
    rows = [
        make_row(
            v,
            runtime_of(v),
            m,
            b,
            batches[(v, m, b)],
            setup[v],
            peaks[v],
            sizes[v],
            config.price_per_hour,
        )
        for b in config.batch_sizes
        for m in modes
        for v in variants
    ]
    add_ratios(rows, sizes)
    add_agreement(rows, variants[0], {v: s["agreement"] for v, s in setup.items()})
    machine = machine_info(config.threads)
    versions = next(iter(setup.values()))
    for runtime in ("onnxruntime", "openvino"):
        machine[runtime] = versions.get(runtime) or machine[runtime]
    if any(v in TORCH_PATHS for v in variants):
        machine["torch"] = versions.get("torch")
    return {
        "machine": machine,
        "model": {
            "path": str(model_dir),
            "family": first.family,
            "synthetic": is_synthetic(model_dir),
            "max_length": max_length,
            **config.extra,
        },
        "settings": {
            "variants": variants,
            "modes": [m for m in modes if m],
            "reference": variants[0],
            "batch_sizes": list(config.batch_sizes),
            "duration_s": config.duration,
            "rounds": rounds,
            "price_per_hour": config.price_per_hour,
            "agreement_prompts": config.agreement_prompts,
            **prompt_source,
        },
        "results": rows,
        "definitions": DEFINITIONS,
    }
