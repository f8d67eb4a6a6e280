"""What this CPU can do, and which model variant it runs best."""

from __future__ import annotations

import os
import platform
from pathlib import Path

X86_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)
ARM_FEATURES = ("asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve", "sve2")


def usable_cpus() -> int:
    """Logical CPUs this process may use: affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = max(1, min(count, int(quota + 0.5) or 1))
    return count


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    try:
        v2 = root / "cpu.max"
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1q, v1p = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
        if v1q.exists() and v1p.exists():
            q = int(v1q.read_text())
            return None if q <= 0 else q / int(v1p.read_text())
    except (OSError, ValueError):
        return None
    return None


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(arch, flags) from /proc/cpuinfo text (`flags` on x86, `Features` on arm64)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    arch = "x86_64"
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "flags":
            flags.update(value.split())
        elif key == "features":
            flags.update(value.split())
            arch = "aarch64"
    if not cpuinfo:
        arch = platform.machine().lower()
    return arch, flags


def preferred_variants(arch: str | None = None, flags: set[str] | None = None) -> list[str]:
    """Variants in the order this CPU runs them fastest with onnxruntime.

    x86 onnxruntime has no FP16 GEMM kernels, so FP16 comes last there; INT8 leads when VNNI or
    AMX make integer dot products cheap. On arm64 FP16 needs asimdhp.
    """
    if arch is None or flags is None:
        arch, flags = cpu_flags()
    if arch in ("aarch64", "arm64"):
        int8_fast = bool(flags & {"i8mm", "asimddp"})
        order = ["int8", "fp16", "fp32"] if int8_fast else ["fp16", "int8", "fp32"]
        if "asimdhp" not in flags:
            order.remove("fp16")
            order.append("fp16")
        return order
    int8_fast = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8", "avx2"})
    return ["int8", "fp32", "fp16"] if int8_fast else ["fp32", "int8", "fp16"]
