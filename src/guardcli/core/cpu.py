"""What this CPU can do, and which model variant it runs best with onnxruntime.

Features come from /proc/cpuinfo (`flags` on x86, `Features` on arm64) or from a macOS
`sysctl hw.optional` dump. The recommendation follows what onnxruntime's CPU kernels (MLAS)
actually accelerate, not the flags alone. Nothing here imports onnxruntime unless asked for its
version, so `guard probe-cpu` stays fast.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.cpu_advice import (  # noqa: F401 - importable from here
    FP16_X86_SLOWDOWN,
    Recommendation,
    recommend_arm,
    recommend_x86,
)

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

# macOS `sysctl hw.optional` keys -> Linux feature names (any key set to 1 is enough).
SYSCTL_FEATURES = {
    "asimd": ("hw.optional.AdvSIMD", "hw.optional.neon"),
    "asimdhp": ("hw.optional.arm.FEAT_FP16", "hw.optional.neon_fp16"),
    "asimddp": ("hw.optional.arm.FEAT_DotProd",),
    "i8mm": ("hw.optional.arm.FEAT_I8MM",),
    "bf16": ("hw.optional.arm.FEAT_BF16",),
    "sve": ("hw.optional.arm.FEAT_SVE",),
    "sve2": ("hw.optional.arm.FEAT_SVE2",),
    "avx2": ("hw.optional.avx2_0",),
    "fma": ("hw.optional.fma",),
    "avx512f": ("hw.optional.avx512f",),
    "avx512_vnni": ("hw.optional.avx512vnni",),
}

# arm64 `CPU part` numbers (implementer 0x41, Arm Ltd.) for a readable model name.
ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd40": "Neoverse-V1",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
}


@dataclass
class CpuInfo:
    arch: str  # x86_64 | aarch64
    model: str
    flags: set[str]
    source: str  # where the facts came from

    @property
    def features(self) -> dict[str, bool]:
        names = ARM_FEATURES if self.is_arm else X86_FEATURES
        return {n: n in self.flags for n in names}

    @property
    def is_arm(self) -> bool:
        return self.arch in ("aarch64", "arm64")


# ---------------------------------------------------------------------------- parsing


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


class OtherWork:
    """How much of the machine's CPU time other processes used while this one measured
    something: `share()` after the measurement, 0..1 of all the machine's cores (None where
    /proc/stat cannot be read). A GEMM limit timed while other work ran is too low, and every
    share of it computed later too high."""

    def __init__(self, stat: Path = Path("/proc/stat")) -> None:
        self._stat = stat
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, int] | None:
        try:
            first = self._stat.read_text(encoding="ascii").splitlines()[0].split()
        except (OSError, IndexError):
            return None
        if first[0] != "cpu" or len(first) < 5:
            return None
        ticks = [int(v) for v in first[1:]]
        # user nice system idle iowait irq softirq steal ...: busy = all but idle, iowait, steal
        busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)
        busy -= ticks[7] if len(ticks) > 7 else 0
        hz = os.sysconf("SC_CLK_TCK")
        own = os.times()
        return (
            busy / hz,
            own.user + own.system + own.children_user + own.children_system,
            own.elapsed,
            os.cpu_count() or 1,
        )

    def share(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None:
            return None
        busy = end[0] - self._start[0]
        own = end[1] - self._start[1]
        wall = end[2] - self._start[2]
        if wall <= 0:
            return None
        return min(max((busy - own) / (wall * end[3]), 0.0), 1.0)


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


def is_sysctl_dump(text: str) -> bool:
    return bool(re.search(r"^hw\.(optional|machine|ncpu)\b", text, re.M))


def parse_sysctl(text: str, source: str = "sysctl") -> CpuInfo:
    """A `sysctl hw machdep.cpu` dump (`key: value` lines) from macOS."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    arm = values.get("hw.optional.arm64") == "1" or values.get("hw.machine", "").startswith("arm")
    flags = {
        name for name, keys in SYSCTL_FEATURES.items() if any(values.get(k) == "1" for k in keys)
    }
    model = values.get("machdep.cpu.brand_string") or values.get("hw.model") or "unknown"
    return CpuInfo("aarch64" if arm else "x86_64", model, flags, source)


def parse_cpuinfo(text: str, source: str = "/proc/cpuinfo") -> CpuInfo:
    """Linux /proc/cpuinfo: `flags` (x86) or `Features` (arm64), from the first processor."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:
            fields[key] = value.strip()
    if "features" in fields:
        part = fields.get("cpu part", "").lower()
        model = fields.get("model") or ARM_PARTS.get(part) or f"arm64 part {part or 'unknown'}"
        if part in ARM_PARTS and ARM_PARTS[part] not in model:
            model = f"{model} ({ARM_PARTS[part]})"
        return CpuInfo("aarch64", model, set(fields["features"].split()), source)
    return CpuInfo(
        "x86_64", fields.get("model name", "unknown"), set(fields.get("flags", "").split()), source
    )


def read_cpu(path: str | Path | None = None) -> CpuInfo:
    """Facts about a CPU: from a cpuinfo or sysctl dump `path`, else from this machine."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        return (
            parse_sysctl(text, str(path))
            if is_sysctl_dump(text)
            else parse_cpuinfo(text, str(path))
        )
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "hw", "machdep.cpu.brand_string"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
            return parse_sysctl(out, "sysctl")
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        info = parse_cpuinfo(Path("/proc/cpuinfo").read_text(), "/proc/cpuinfo")
    except OSError:
        return CpuInfo(_machine_arch(), platform.processor() or "unknown", set(), "none")
    if not info.flags:
        info.arch = _machine_arch()
    return info


def _machine_arch() -> str:
    machine = platform.machine().lower()
    return "aarch64" if machine in ("arm64", "aarch64") else machine or "x86_64"


def cpu_flags(cpuinfo: str | None = None) -> tuple[str, set[str]]:
    """(arch, flags) from /proc/cpuinfo text, or from this machine."""
    info = parse_cpuinfo(cpuinfo) if cpuinfo is not None else read_cpu()
    return info.arch, info.flags


# ---------------------------------------------------------------------------- recommendation


def recommend(info: CpuInfo) -> Recommendation:
    """The variant onnxruntime runs fastest on this CPU, with the reasons in sentences."""
    return recommend_arm(info.flags) if info.is_arm else recommend_x86(info.flags)


def preferred_variants(arch: str | None = None, flags: set[str] | None = None) -> list[str]:
    """Variants in the order this CPU runs them fastest with onnxruntime (`--variant auto`).

    The same rules as `guard probe-cpu`'s recommendation, so the two always agree."""
    if arch is None or flags is None:
        info = read_cpu()
    else:
        info = CpuInfo(arch, "", flags, "given")
    return recommend(info).order


# ---------------------------------------------------------------------------- the report


ORT_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "onnxruntime-directml",
)


def onnxruntime_facts() -> dict[str, Any]:
    """onnxruntime's version and providers, if installed.

    The version comes from package metadata and the providers from a child interpreter, so this
    process never imports onnxruntime (`guard probe-cpu` stays light)."""
    import json
    import sys
    from importlib.metadata import PackageNotFoundError, version

    found = None
    for dist in ORT_DISTRIBUTIONS:
        try:
            found = (dist, version(dist))
            break
        except PackageNotFoundError:
            continue
    if found is None:
        return {"installed": False, "version": None, "package": None, "providers": []}
    code = "import json, onnxruntime as o; print(json.dumps(o.get_available_providers()))"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        providers = json.loads(out.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        providers = None
    return {"installed": True, "version": found[1], "package": found[0], "providers": providers}


def probe(cpuinfo: str | Path | None = None, *, runtime: bool = True) -> dict[str, Any]:
    """Everything `guard probe-cpu` reports, as plain data."""
    info = read_cpu(cpuinfo)
    rec = recommend(info)
    report: dict[str, Any] = {
        "arch": info.arch,
        "model": info.model,
        "source": info.source,
        "features": info.features,
        "usable_cpus": usable_cpus() if cpuinfo is None else None,
        "onnxruntime": onnxruntime_facts() if runtime and cpuinfo is None else None,
        "recommended_variant": rec.variant,
        "variant_order": rec.order,
        "reasons": rec.reasons,
    }
    return report


__all__ = [
    "ARM_FEATURES",
    "X86_FEATURES",
    "CpuInfo",
    "Recommendation",
    "cpu_flags",
    "preferred_variants",
    "probe",
    "read_cpu",
    "recommend",
    "usable_cpus",
]
