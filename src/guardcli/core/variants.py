"""Which runtime runs which variant, and which variant `--variant auto` picks.

A variant names one path end to end: a file and the runtime that runs it. onnxruntime runs the
ONNX files (fp32, fp16, int8) and stays the portable default; OpenVINO, an extra for Intel CPUs,
compiles the same FP32 ONNX file (ov-fp32 at f32, bf16 with its bf16 precision hint) and runs its
own NNCF INT8 (ov-int8, made by `guard quantize --backend openvino`).

`--variant auto` follows what `guard probe-cpu --verify` measured on this CPU when that is stored,
and the CPU flags otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.catalog import ONNX_VARIANT_FILES, VARIANTS
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.paths import cache_dir

BACKENDS = ("onnxruntime", "openvino")
# Variants that are not a graph file: a checkpoint run with torch (a generative guard's
# safetensors; an adapter + head on a base model).
TORCH_VARIANT = "torch"
LORA_VARIANT = "lora"
DEFAULT_BACKEND = "onnxruntime"
OPENVINO_INT8_FILE = "openvino/model_int8.xml"
OPENVINO_VARIANT_FILES = {
    "ov-fp32": ONNX_VARIANT_FILES["fp32"],
    "bf16": ONNX_VARIANT_FILES["fp32"],
    "ov-int8": OPENVINO_INT8_FILE,
}
# The ONNX variant whose file an OpenVINO variant compiles (a catalog entry lists files by them).
OPENVINO_SOURCES = {"ov-fp32": "fp32", "bf16": "fp32"}
ALL_VARIANTS = (*VARIANTS, *OPENVINO_VARIANT_FILES)
# OpenVINO's INFERENCE_PRECISION_HINT per variant; None leaves OpenVINO's default, which runs the
# float ops an INT8 model keeps in bf16 on CPUs that have it (AMX, avx512_bf16) and f32 elsewhere.
OPENVINO_PRECISION = {"ov-fp32": "f32", "bf16": "bf16", "ov-int8": None}
# Without a measurement, OpenVINO paths come after onnxruntime's, fastest first (as measured on
# Sapphire Rapids: NNCF INT8 1,970 tok/s, bf16 hint 1,352, f32 ~ onnxruntime FP32).
OPENVINO_ORDER = ("ov-int8", "bf16", "ov-fp32")
# `--backend openvino --variant X` means the OpenVINO path of X.
_ON_OPENVINO = {"fp32": "ov-fp32", "int8": "ov-int8", "bf16": "bf16"}


# llama.cpp (the 'llamacpp' extra) runs a generative guard's GGUF file, made by `guard quantize
# DIR --to gguf-f16,gguf-q8_0` (runtime.gguf_export), Q8_0 first when both are there.
LLAMACPP = "llamacpp"
GGUF_VARIANTS = ("gguf-q8_0", "gguf-f16")
GGUF_VARIANT_FILES = {v: f"{v}/model.gguf" for v in GGUF_VARIANTS}

RUNTIMES = ("onnxruntime", "openvino", "torch", "remote", LLAMACPP)
RUNTIME_ALIASES = {"onnx": "onnxruntime"}  # the name families and serve used before 0.2


def runtime_name(backend: str) -> str:
    """`backend` in the one vocabulary (RUNTIMES, or auto): 'onnx' is read as onnxruntime."""
    return RUNTIME_ALIASES.get(backend, backend)


@dataclass(frozen=True)
class Variant:
    """One way to run a model, end to end: `name` (what --variant takes), `file` (the graph,
    relative to the model folder; None for a checkpoint run with torch), `runtime` (one of
    RUNTIMES) and `precision` (fp32|fp16|bf16|int8; None where the dtype is chosen at load)."""

    name: str
    file: str | None
    runtime: str
    precision: str | None


_PRECISION = {"fp32": "fp32", "fp16": "fp16", "int8": "int8", "ov-fp32": "fp32", "bf16": "bf16"}
# Every variant guardcli knows, by name: the one vocabulary the constants above describe.
KNOWN_VARIANTS: dict[str, Variant] = {
    **{v: Variant(v, f, DEFAULT_BACKEND, _PRECISION[v]) for v, f in ONNX_VARIANT_FILES.items()},
    **{
        v: Variant(v, f, "openvino", _PRECISION.get(v, "int8"))
        for v, f in OPENVINO_VARIANT_FILES.items()
    },
    # Q8_0: 8-bit weights in blocks of 32 with a scale each, activations quantized alike.
    **{
        v: Variant(v, f, LLAMACPP, {"gguf-f16": "fp16", "gguf-q8_0": "int8"}[v])
        for v, f in GGUF_VARIANT_FILES.items()
    },
    TORCH_VARIANT: Variant(TORCH_VARIANT, None, "torch", None),
    LORA_VARIANT: Variant(LORA_VARIANT, None, "torch", None),
}


def variant_info(name: str) -> Variant | None:
    """The Variant called `name`, or None for a name guardcli does not know."""
    return KNOWN_VARIANTS.get(name)


def backend_of(variant: str) -> str:
    """The graph runtime of a file variant: openvino for OpenVINO's, else onnxruntime (the
    torch paths are the families' own: see runtime_of)."""
    return "openvino" if variant in OPENVINO_VARIANT_FILES else DEFAULT_BACKEND


def runtime_of(variant: str) -> str:
    """The runtime that runs `variant` (torch for a checkpoint path; unknown names: the
    default graph runtime)."""
    known = variant_info(variant)
    return known.runtime if known is not None else DEFAULT_BACKEND


def variant_file(variant: str) -> str:
    known = variant_info(variant)
    if known is None or known.file is None:
        raise KeyError(variant)
    return known.file


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def llamacpp_available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def check_backend(backend: str | None) -> None:
    if backend is not None and backend not in BACKENDS:
        raise GuardError(
            f"Unknown backend {backend!r}.",
            hint=f"Choose one of: {', '.join(BACKENDS)}.",
            code=ExitCode.INPUT,
        )


def with_backend(variant: str, backend: str | None) -> str:
    """The variant that runs `variant` on `backend` (None: the variant's own backend)."""
    if backend == LLAMACPP:
        if variant == "auto" or variant in GGUF_VARIANTS:
            return variant
        raise GuardError(
            f"The {variant} variant does not run on {LLAMACPP}.",
            hint=f"On {LLAMACPP} choose one of: auto, {', '.join(GGUF_VARIANTS)} (made by "
            "`guard quantize DIR --to gguf-q8_0`).",
            code=ExitCode.INPUT,
        )
    check_backend(backend)
    if backend is None or variant == "auto":
        return variant
    if backend == "openvino":
        if variant in OPENVINO_VARIANT_FILES:
            return variant
        if variant in _ON_OPENVINO:
            return _ON_OPENVINO[variant]
    elif variant not in OPENVINO_VARIANT_FILES:
        return variant
    runs = [v for v in ALL_VARIANTS if backend_of(v) == backend]
    raise GuardError(
        f"The {variant} variant does not run on {backend}.",
        hint=f"On {backend} choose one of: {', '.join(runs)}.",
        code=ExitCode.INPUT,
    )


def runnable(variants: list[str]) -> list[str]:
    """`variants` without the OpenVINO ones when OpenVINO is not installed."""
    if openvino_available():
        return variants
    return [v for v in variants if backend_of(v) != "openvino"]


# ---------------------------------------------------------------------------- measurement


def measurement_path() -> Path:
    """`GUARD_PROBE_RESULT`, else probe-cpu.json in guardcli's cache folder."""

    if env := os.environ.get("GUARD_PROBE_RESULT"):
        return Path(env).expanduser()
    return cache_dir() / "probe-cpu.json"


def cpu_fingerprint() -> str:
    """This CPU's model and flags, and the usable cores: a stored measurement holds only here."""
    from guardcli.core.cpu import read_cpu, usable_cpus

    info = read_cpu()
    text = f"{info.arch}|{info.model}|{' '.join(sorted(info.flags))}|{usable_cpus()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_measurement(timings: list[dict[str, Any]], shape: list[int]) -> Path:
    """Store `probe-cpu --verify`'s timings with the order they imply, fastest first."""
    ok = [t for t in timings if not t.get("error")]
    order = [t["variant"] for t in sorted(ok, key=lambda t: -t["ratio_vs_fp32"])]
    path = measurement_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "cpu": cpu_fingerprint(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "shape": shape,
        "order": order,
        "timings": timings,
    }
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_measurement() -> dict[str, Any] | None:
    """The stored measurement, if there is one and it was taken on this CPU."""
    try:
        data = json.loads(measurement_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("cpu") != cpu_fingerprint():
        return None
    if not isinstance(data.get("order"), list):
        return None
    return data


# CPU flags of native bf16 arithmetic (x86 AMX and AVX-512, Arm); without one, OpenVINO emulates
# its bf16 hint, many times slower than f32.
NATIVE_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16", "bf16"})


def openvino_order(flags: set[str]) -> list[str]:
    """OpenVINO's paths, fastest first, from flags: without native bf16 (AMX, avx512_bf16, arm
    bf16) OpenVINO emulates the bf16 hint and it runs far slower than f32."""
    if flags & NATIVE_BF16_FLAGS:
        return list(OPENVINO_ORDER)
    return ["ov-int8", "ov-fp32", "bf16"]


def auto_order(backend: str | None = None) -> list[str]:
    """Every variant, the one `--variant auto` should pick first: measured, else from flags."""
    from guardcli.core.cpu import preferred_variants, read_cpu

    flags_order = [*preferred_variants(), *openvino_order(read_cpu().flags)]
    measured = load_measurement()
    order = [v for v in (measured or {}).get("order", []) if v in ALL_VARIANTS]
    order += [v for v in flags_order if v not in order]
    order = runnable(order)
    if backend is not None:
        order = [v for v in order if backend_of(v) == backend]
    return order
