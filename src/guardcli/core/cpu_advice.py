"""Which variant onnxruntime runs fastest given a CPU's feature flags, with the reasons in
sentences: the rules follow what onnxruntime's CPU kernels (MLAS) accelerate, not the flags
alone. Pure functions of the flags; core.cpu reads the flags and calls these."""

from __future__ import annotations

from dataclasses import dataclass, field

FP16_X86_SLOWDOWN = 0.87  # FP16 / FP32 throughput, CSAM-Guard, Sapphire Rapids, onnxruntime 1.32


@dataclass
class Recommendation:
    variant: str
    order: list[str]  # all variants, fastest first (what `--variant auto` uses)
    reasons: list[str] = field(default_factory=list)


def recommend_x86(flags: set[str]) -> Recommendation:
    reasons: list[str] = []
    amx = "amx_int8" in flags and "amx_tile" in flags
    vnni = [f for f in ("avx512_vnni", "avx_vnni") if f in flags]
    if amx:
        reasons.append(
            "INT8: onnxruntime's integer GEMM uses AMX tiles (amx_int8) here, the fastest path "
            "on this CPU (measured ~2.5x FP32 for CSAM-Guard on Sapphire Rapids)."
        )
    elif vnni:
        reasons.append(
            f"INT8: onnxruntime's integer GEMM uses VNNI ({', '.join(vnni)}) here, "
            "typically 1.5-2.5x FP32."
        )
    elif "avx2" in flags:
        reasons.append(
            "INT8: no VNNI or AMX, so onnxruntime's integer GEMM falls back to AVX2 "
            "multiply-add sequences; it still moves 4x fewer weight bytes than FP32, but the gain "
            "is smaller - run `guard probe-cpu --verify` to confirm."
        )
    else:
        reasons.append(
            "FP32: without AVX2 onnxruntime's INT8 kernels have little to work with; "
            "FP32 is the safe choice."
        )
    order = (
        ["int8", "fp32", "fp16"] if (amx or vnni or "avx2" in flags) else ["fp32", "int8", "fp16"]
    )
    fp16_note = (
        "FP16: onnxruntime has no x86 FP16 GEMM kernels, so FP16 runs slower than FP32 "
        f"(measured ~{FP16_X86_SLOWDOWN}x FP32 on Sapphire Rapids) and is never recommended on x86 "
        "for speed"
    )
    if "avx512_fp16" in flags:
        fp16_note += ", even though this CPU has avx512_fp16"
    reasons.append(fp16_note + ".")
    if "amx_bf16" in flags or "avx512_bf16" in flags:
        reasons.append(
            "BF16 (amx_bf16/avx512_bf16) would help PyTorch or OpenVINO, not onnxruntime's "
            "FP32/FP16/INT8 ONNX variants."
        )
    return Recommendation(order[0], order, reasons)


def recommend_arm(flags: set[str]) -> Recommendation:
    reasons: list[str] = []
    int8_fast = [f for f in ("i8mm", "asimddp") if f in flags]
    fp16 = "asimdhp" in flags
    if int8_fast:
        order = ["int8", "fp16", "fp32"] if fp16 else ["int8", "fp32", "fp16"]
        reasons.append(
            f"INT8: onnxruntime's integer GEMM uses {' and '.join(int8_fast)} "
            "(SMMLA/SDOT) here, the fastest path."
        )
    elif fp16:
        order = ["fp16", "int8", "fp32"]
        reasons.append(
            "FP16: native half-precision arithmetic (asimdhp) runs onnxruntime's FP16 GEMM at "
            "up to twice the FP32 rate, and this CPU lacks dotprod/i8mm to speed INT8."
        )
    else:
        order = ["int8", "fp32", "fp16"]
        reasons.append(
            "INT8: no dotprod or i8mm, so onnxruntime's integer GEMM uses plain NEON widening "
            "multiplies; the gain over FP32 comes mostly from 4x smaller weights - run "
            "`guard probe-cpu --verify` to confirm."
        )
    if fp16 and order[0] != "fp16":
        reasons.append("FP16: asimdhp is present, so FP16 is a fast second choice.")
    elif not fp16:
        reasons.append(
            "FP16: no asimdhp, so FP16 would be emulated through FP32 and run slower; "
            "avoid it here."
        )
    if "sve" in flags:
        reasons.append(
            "SVE is present; onnxruntime's MLAS kernels use NEON, not SVE, so it adds nothing here."
        )
    return Recommendation(order[0], order, reasons)
