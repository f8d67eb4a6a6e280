"""`guard probe-cpu`: features and recommendations for recorded CPUs, and `--verify`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from guardcli.core import cpu

from ..conftest import ROOT, invoke

FIXTURES = Path(__file__).parents[1] / "fixtures" / "cpuinfo"

# fixture -> (arch, model, features present, recommended, variant order)
CPUS = {
    "sapphire_rapids.txt": (
        "x86_64",
        "Intel(R) Xeon(R) Platinum 8480+",
        set(cpu.X86_FEATURES),
        "int8",
        ["int8", "fp32", "fp16"],
    ),
    "zen4.txt": (
        "x86_64",
        "AMD Ryzen 9 7950X 16-Core Processor",
        {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16"},
        "int8",
        ["int8", "fp32", "fp16"],
    ),
    "haswell.txt": (
        "x86_64",
        "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz",
        {"avx2", "fma"},
        "int8",
        ["int8", "fp32", "fp16"],
    ),
    "cloud_vm_xeon.txt": (
        "x86_64",
        "Intel(R) Xeon(R) Processor",
        {"avx2", "fma", "avx512f", "avx512_vnni"},
        "int8",
        ["int8", "fp32", "fp16"],
    ),
    "graviton3.txt": (
        "aarch64",
        "Neoverse-V1",
        {"asimd", "asimdhp", "asimddp", "i8mm", "bf16", "sve"},
        "int8",
        ["int8", "fp16", "fp32"],
    ),
    "cortex_a72.txt": (
        "aarch64",
        "Raspberry Pi 4 Model B Rev 1.1 (Cortex-A72)",
        {"asimd"},
        "int8",
        ["int8", "fp32", "fp16"],
    ),
    "apple_m2_sysctl.txt": (
        "aarch64",
        "Apple M2 Pro",
        {"asimd", "asimdhp", "asimddp", "i8mm", "bf16"},
        "int8",
        ["int8", "fp16", "fp32"],
    ),
}


@pytest.mark.parametrize("name", sorted(CPUS))
def test_features_and_recommendation(name: str) -> None:
    arch, model, present, variant, order = CPUS[name]
    report = cpu.probe(FIXTURES / name, runtime=False)
    assert (report["arch"], report["model"]) == (arch, model)
    names = cpu.X86_FEATURES if arch == "x86_64" else cpu.ARM_FEATURES
    assert report["features"] == {n: n in present for n in names}
    assert report["recommended_variant"] == variant
    assert report["variant_order"] == order
    # `--variant auto` follows the same rules
    info = cpu.read_cpu(FIXTURES / name)
    assert cpu.preferred_variants(info.arch, info.flags) == order


def test_x86_never_recommends_fp16_even_with_avx512_fp16() -> None:
    reasons = cpu.probe(FIXTURES / "sapphire_rapids.txt", runtime=False)["reasons"]
    assert reasons[0].startswith("INT8: onnxruntime's integer GEMM uses AMX tiles (amx_int8)")
    assert reasons[1] == (
        "FP16: onnxruntime has no x86 FP16 GEMM kernels, so FP16 runs slower than FP32 "
        "(measured ~0.87x FP32 on Sapphire Rapids) and is never recommended on x86 for speed, "
        "even though this CPU has avx512_fp16."
    )
    zen4 = cpu.probe(FIXTURES / "zen4.txt", runtime=False)["reasons"]
    assert "VNNI (avx512_vnni)" in zen4[0]
    assert "even though" not in zen4[1]
    haswell = cpu.probe(FIXTURES / "haswell.txt", runtime=False)["reasons"]
    assert "no VNNI or AMX" in haswell[0] and "--verify" in haswell[0]


def test_arm_reasons() -> None:
    a72 = cpu.probe(FIXTURES / "cortex_a72.txt", runtime=False)["reasons"]
    assert "no dotprod or i8mm" in a72[0]
    assert a72[1].startswith("FP16: no asimdhp")
    g3 = cpu.probe(FIXTURES / "graviton3.txt", runtime=False)["reasons"]
    assert "i8mm and asimddp" in g3[0]
    assert g3[1] == "FP16: asimdhp is present, so FP16 is a fast second choice."


def test_arm_fp16_without_dotprod_prefers_fp16() -> None:
    rec = cpu.recommend(cpu.CpuInfo("aarch64", "A75-like", {"asimd", "asimdhp"}, "test"))
    assert rec.order == ["fp16", "int8", "fp32"]
    assert rec.reasons[0].startswith("FP16: native half-precision arithmetic (asimdhp)")


def test_x86_without_avx2_prefers_fp32() -> None:
    assert cpu.preferred_variants("x86_64", {"sse4_2", "avx"}) == ["fp32", "int8", "fp16"]


def test_cgroup_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu._cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu._cgroup_quota(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cpu._cgroup_quota(v1) == 2.0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads /proc/stat")
def test_other_work_counts_another_process_not_this_one() -> None:
    import time

    mine = cpu.OtherWork()
    end = time.perf_counter() + 0.6
    while time.perf_counter() < end:  # this process's own work is not "other work"
        pass
    own_only = mine.share()
    busy = "import time\nend = time.perf_counter() + 1.5\nwhile time.perf_counter() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        time.sleep(0.3)
        other = cpu.OtherWork()
        time.sleep(0.8)
        share = other.share()
    finally:
        child.wait()
    ncpu = os.cpu_count() or 1
    assert share is not None and share >= 0.6 / ncpu  # one busy core of ncpu
    assert own_only is not None and 0.0 <= own_only <= 1.0
    assert cpu.OtherWork(stat=Path("/nonexistent/stat")).share() is None


def test_probe_cpu_json_for_another_machine(runner) -> None:
    path = FIXTURES / "graviton3.txt"
    result = invoke(runner, ["probe-cpu", "--format", "json", "--cpuinfo", str(path)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["recommended_variant"] == "int8"
    assert report["features"]["sve"] is True and report["features"]["sve2"] is False
    assert report["usable_cpus"] is None  # not this machine's
    assert report["source"] == str(path)
    assert result.stderr == ""


def test_probe_cpu_table_for_this_machine(runner) -> None:
    result = invoke(runner, ["probe-cpu", "--format", "table"])
    assert result.exit_code == 0, result.stderr
    assert "recommended:" in result.stdout
    assert f"usable cpus:  {cpu.usable_cpus()}" in result.stdout
    assert "onnxruntime:  " in result.stdout


def test_probe_cpu_bad_options(runner, tmp_path) -> None:
    result = invoke(runner, ["probe-cpu", "--cpuinfo", str(tmp_path / "nope")])
    assert result.exit_code == 2
    result = invoke(runner, ["probe-cpu", "--format", "xml"])
    assert result.exit_code == 2
    assert result.stderr == "Error: Unknown format 'xml'.\nChoose one of: table, json.\n"


def test_help_and_probe_do_not_import_heavy_runtimes() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from guardcli.cli import app\n"
        "r = CliRunner()\n"
        "assert r.invoke(app, ['--help']).exit_code == 0\n"
        "assert r.invoke(app, ['probe-cpu', '-f', 'json']).exit_code == 0\n"
        "heavy = [m for m in ('onnxruntime', 'torch', 'transformers') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
def test_verify_times_three_variants(runner, monkeypatch, tmp_path) -> None:
    from guardcli.runtime import gemm_check as matmul_check

    monkeypatch.setenv("GUARD_PROBE_RESULT", str(tmp_path / "probe.json"))
    monkeypatch.setattr(matmul_check, "DEFAULT_SHAPE", (16, 64, 128))
    monkeypatch.setattr(matmul_check, "SECONDS_PER_VARIANT", 0.05)
    result = invoke(runner, ["probe-cpu", "--verify", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    verify = json.loads(result.stdout)["verify"]
    assert verify["shape"] == [16, 64, 128]
    rows = {r["variant"]: r for r in verify["timings"]}
    assert {"fp32", "fp16", "int8"} <= set(rows)  # + OpenVINO's paths when it is installed
    assert rows["fp32"]["ratio_vs_fp32"] == 1.0
    assert all(r["ms"] > 0 and r["runs"] >= 3 for r in rows.values() if not r["error"])
    assert verify["fastest"] in rows


def test_verify_refuses_another_machines_cpuinfo(runner) -> None:
    path = FIXTURES / "zen4.txt"
    result = invoke(runner, ["probe-cpu", "--verify", "--cpuinfo", str(path)])
    assert result.exit_code == 2
    assert "cannot be combined with --cpuinfo" in result.stderr
