"""What `guard bench` is asked to time: variants, modes, batch sizes, and the config of a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardcli.core import registry
from guardcli.core.errors import GuardError, input_error
from guardcli.core.resolve import local_family, present_variants
from guardcli.core.spec import GuardSpec
from guardcli.core.variants import (
    ALL_VARIANTS,
    GGUF_VARIANTS,
    LORA_VARIANT,
    NATIVE_BF16_FLAGS,
    TORCH_VARIANT,
    runtime_of,
    with_backend,
)

AGREEMENT_PROMPTS = 32  # prompts every variant judges once, to compare with the reference
# Paths run with torch: a causal LM checkpoint (qwen3guard-gen), an OpenCC LoRA adapter + head.
TORCH_PATHS = (TORCH_VARIANT, LORA_VARIANT)
BENCH_VARIANTS = (*ALL_VARIANTS, *TORCH_PATHS, *GGUF_VARIANTS)
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
    duplicates: float = 0.0  # share of repeats in the timed stream; > 0 adds cached runs
    limits: bool = False  # measure this machine's GEMM limit on the model's shapes (cached)


def parse_list(text: str, what: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise input_error(f"--{what} is empty.", hint=f"Give a comma-separated list for --{what}.")
    return items


def guard_spec(
    model_dir: str | Path,
    variant: str,
    dtype: str | None = None,
    *,
    max_length: int | None = None,
    threads: int | None = None,
) -> GuardSpec:
    """The GuardSpec that runs bench path `variant` of `model_dir` (torch: the checkpoint beside
    any graph); `dtype` goes to the torch paths only (ONNX variants have their own precision)."""
    options = load_options(variant, dtype)
    return GuardSpec(
        model=str(model_dir),
        variant=options["variant"],
        backend=options.get("backend"),
        dtype=options.get("dtype"),
        max_length=max_length,
        threads=threads,
    )


def load_options(variant: str, dtype: str | None = None) -> dict[str, Any]:
    """`load_guard` keyword arguments that run `variant` (see guard_spec, which uses them)."""
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


def parse_variants(
    text: str, present: Sequence[str], backend: str | None = None, model_dir: Path | None = None
) -> list[str]:
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
        where = "" if model_dir is None else f" {model_dir}"
        to = {"int8": " --to int8", "fp16": " --to fp16"}.get(missing[0], "")
        raise GuardError(
            f"The model{where} has no {missing[0]} variant "
            f"(found: {', '.join(present) or 'none'}).",
            hint="It runs with torch only: use --variant all."
            if torch_only
            else "Pick variants that are there with --variant, or make one with "
            f"`guard quantize{where or ' DIR'}{to}`.",
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
