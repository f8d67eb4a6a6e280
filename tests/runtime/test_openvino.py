"""The OpenVINO backend (ov-fp32, bf16, ov-int8 by NNCF) against onnxruntime FP32, the optimized
graph cache, backend selection (flags, stored measurement), and the CLI flags."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from guardcli.core.errors import ExitCode, GuardError

from ..conftest import SAMPLES, invoke

pytest.importorskip("openvino")

FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "config.json",
    "guardcli_synthetic.json",
    "onnx/model.onnx",
    "onnx/model_quantized.onnx",
)


@pytest.fixture(scope="module")
def ov_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model plus an ov-int8 made through `guard quantize --backend openvino`."""
    from typer.testing import CliRunner

    folder = tmp_path_factory.mktemp("ov") / "csam-guard-tiny"
    for rel in FILES:
        if (tiny_model / rel).exists():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tiny_model / rel, folder / rel)
    calibration = folder.parent / "calibration.jsonl"
    lines = (SAMPLES / "prompts.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    calibration.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["quantize", str(folder), "--backend", "openvino", "--calibration", str(calibration)]
    result = invoke(CliRunner(), args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(folder / "openvino" / "model_int8.xml")
    assert "quantizing" in result.stderr and "float: 2" in result.stderr  # 2 layers' down_proj
    return folder


def _batch(model_dir: Path):
    from guardcli.core.batching import pad
    from guardcli.core.tokenize import TextTokenizer

    texts = [
        json.loads(line)["text"]
        for line in (SAMPLES / "prompts.jsonl").read_text(encoding="utf-8").splitlines()[:6]
    ]
    tok = TextTokenizer(model_dir, 64)
    return pad([e.ids for e in tok.encode(texts)], tok.pad_id)  # mixed lengths: padding too


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def reference(ov_model: Path) -> np.ndarray:
    """onnxruntime FP32 logits, without any cached graph."""
    from guardcli.runtime.onnx_session import OnnxSession

    ids, mask = _batch(ov_model)
    return OnnxSession(ov_model / "onnx" / "model.onnx", cache=False).run(ids, mask)


@pytest.mark.slow
def test_openvino_fp32_agrees_with_onnxruntime_fp32(ov_model, reference) -> None:
    from guardcli.runtime.openvino_session import OpenVinoSession

    ids, mask = _batch(ov_model)
    got = OpenVinoSession(ov_model / "onnx" / "model.onnx", precision="f32").run(ids, mask)
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "tolerance"), [("bf16", 0.1), ("ov-int8", 0.15)])
def test_bf16_and_int8_stay_close_to_fp32(ov_model, reference, variant, tolerance) -> None:
    from guardcli.core.resolve import resolve
    from guardcli.runtime import open_session

    ids, mask = _batch(ov_model)
    model = resolve(ov_model, variant)
    assert model.backend == "openvino"
    got = open_session(model).run(ids, mask)
    assert np.isfinite(got).all()
    p_ref, p_got = _softmax(reference)[:, 1], _softmax(got)[:, 1]
    assert np.abs(p_got - p_ref).max() < tolerance
    assert not np.allclose(got, reference, atol=1e-6)  # really another precision


@pytest.mark.slow
def test_compiled_blobs_are_kept_apart_per_precision(ov_model, reference, tmp_path, monkeypatch):
    """OpenVINO 2026.4 keys its cache without the precision hint: a shared folder handed an f32
    blob to the bf16 compile. Compile f32 then bf16 twice each through one guardcli cache."""
    from guardcli.runtime.openvino_session import OpenVinoSession

    monkeypatch.setenv("GUARD_CACHE", str(tmp_path))
    ids, mask = _batch(ov_model)
    graph = ov_model / "onnx" / "model.onnx"
    runs = {
        p: [OpenVinoSession(graph, precision=p).run(ids, mask) for _ in range(2)]
        for p in ("f32", "bf16")
    }
    np.testing.assert_allclose(runs["f32"][1], reference, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(runs["bf16"][1], runs["bf16"][0], atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "openvino").iterdir()) == ["bf16", "f32"]


@pytest.mark.slow
def test_keep_float_is_an_ignored_scope(ov_model) -> None:
    """down_proj MatMuls take float inputs; the others take FakeQuantize'd ones."""
    import openvino as ov

    model = ov.Core().read_model(str(ov_model / "openvino" / "model_int8.xml"))
    quantized = {}
    for op in model.get_ops():
        if op.get_type_name() == "MatMul" and "/model/layers" in op.get_friendly_name():
            sources = [op.input_value(i).get_node().get_type_name() for i in range(2)]
            quantized[op.get_friendly_name()] = "FakeQuantize" in sources
    down = {n: q for n, q in quantized.items() if "down_proj" in n}
    assert down and not any(down.values())
    assert all(q for n, q in quantized.items() if "down_proj" not in n)


def test_ignored_patterns_escape_names() -> None:
    from guardcli.jobs.convert.openvino_quant import ignored_patterns

    assert ignored_patterns(["down_proj", "", "a.b"]) == [".*down_proj.*", ".*a\\.b.*"]


# ---------------------------------------------------------------- onnxruntime's graph cache


@pytest.mark.slow
def test_optimized_graph_is_cached_beside_the_model_and_reused(tiny_model, tmp_path) -> None:
    from guardcli.runtime.onnx_session import CACHE_FOLDER, OnnxSession

    folder = tmp_path / "m" / "onnx"
    folder.mkdir(parents=True)
    shutil.copy(tiny_model / "onnx" / "model_quantized.onnx", folder / "model.onnx")
    ids, mask = _batch(tiny_model)
    first = OnnxSession(folder / "model.onnx")
    assert not first.cache_hit and first.optimized is not None
    assert first.optimized.parent == folder / CACHE_FOLDER and first.optimized.exists()
    assert first.optimized.with_name(first.optimized.name + ".data").exists()
    assert [p.name for p in (folder / CACHE_FOLDER).iterdir() if p.name.startswith(".")] == []
    second = OnnxSession(folder / "model.onnx")
    assert second.cache_hit and second.optimized == first.optimized
    np.testing.assert_allclose(second.run(ids, mask), first.run(ids, mask), atol=1e-5)
    # A changed model (new mtime or size) is optimized again, under a new key.
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes())
    third = OnnxSession(folder / "model.onnx")
    assert not third.cache_hit and third.optimized != first.optimized


@pytest.mark.slow
def test_a_read_only_model_folder_caches_in_guardcli_cache(tiny_model, tmp_path, monkeypatch):
    from guardcli.runtime import onnx_session

    monkeypatch.setenv("GUARD_CACHE", str(tmp_path / "cache"))
    real = onnx_session._writable
    monkeypatch.setattr(onnx_session, "_writable", lambda f: "models" not in f.parts and real(f))
    folder = tmp_path / "models" / "onnx"
    folder.mkdir(parents=True)
    shutil.copy(tiny_model / "onnx" / "model_quantized.onnx", folder / "model.onnx")
    first = onnx_session.OnnxSession(folder / "model.onnx")
    assert first.optimized is not None
    assert (tmp_path / "cache" / "optimized") in first.optimized.parents
    assert onnx_session.OnnxSession(folder / "model.onnx").cache_hit


@pytest.mark.slow
def test_a_damaged_cache_entry_is_rebuilt(tiny_model, tmp_path) -> None:
    from guardcli.runtime.onnx_session import OnnxSession

    folder = tmp_path / "onnx"
    folder.mkdir()
    shutil.copy(tiny_model / "onnx" / "model_quantized.onnx", folder / "model.onnx")
    first = OnnxSession(folder / "model.onnx")
    assert first.optimized is not None
    first.optimized.write_bytes(b"garbage")
    again = OnnxSession(folder / "model.onnx")
    ids, mask = _batch(tiny_model)
    np.testing.assert_allclose(again.run(ids, mask), first.run(ids, mask), atol=1e-5)


# ---------------------------------------------------------------- selection


def test_backend_maps_variants() -> None:
    from guardcli.core.variants import with_backend

    assert with_backend("fp32", "openvino") == "ov-fp32"
    assert with_backend("int8", "openvino") == "ov-int8"
    assert with_backend("bf16", None) == "bf16"
    assert with_backend("int8", "onnxruntime") == "int8"
    with pytest.raises(GuardError, match="does not run on onnxruntime"):
        with_backend("bf16", "onnxruntime")
    with pytest.raises(GuardError, match="does not run on openvino"):
        with_backend("fp16", "openvino")
    with pytest.raises(GuardError, match="Unknown backend"):
        with_backend("fp32", "tensorrt")


@pytest.mark.slow
def test_auto_follows_flags_then_a_stored_measurement(ov_model, tmp_path, monkeypatch) -> None:
    from guardcli.core import variants as backends
    from guardcli.core.resolve import resolve

    monkeypatch.setenv("GUARD_PROBE_RESULT", str(tmp_path / "probe.json"))
    monkeypatch.setattr(backends, "cpu_fingerprint", lambda: "this-cpu")
    monkeypatch.setattr("guardcli.core.cpu.preferred_variants", lambda: ["int8", "fp32", "fp16"])
    # No measurement: onnxruntime's flag order first, OpenVINO after it.
    assert resolve(ov_model).variant == "int8"
    assert resolve(ov_model, backend="openvino").variant == "ov-int8"
    timings = [
        {"variant": "fp32", "ratio_vs_fp32": 1.0, "error": None},
        {"variant": "int8", "ratio_vs_fp32": 2.4, "error": None},
        {"variant": "bf16", "ratio_vs_fp32": 3.1, "error": None},
        {"variant": "ov-int8", "ratio_vs_fp32": 0.5, "error": "slow here"},
    ]
    backends.save_measurement(timings, [8, 16, 32])
    assert backends.load_measurement()["order"] == ["bf16", "int8", "fp32"]
    picked = resolve(ov_model)
    assert (picked.variant, picked.backend) == ("bf16", "openvino")
    assert picked.graph == ov_model / "onnx" / "model.onnx"
    assert resolve(ov_model, backend="onnxruntime").variant == "int8"
    # Measured on another CPU: ignored.
    monkeypatch.setattr(backends, "cpu_fingerprint", lambda: "another-cpu")
    assert resolve(ov_model).variant == "int8"


@pytest.mark.slow
def test_openvino_variants_need_openvino(ov_model, monkeypatch) -> None:
    from guardcli.core import resolve as hub
    from guardcli.core import variants as backends

    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    monkeypatch.setattr(hub, "openvino_available", lambda: False)
    assert "bf16" not in hub.present_variants(ov_model)
    for variant, backend in (("bf16", None), ("auto", "openvino"), ("fp32", "openvino")):
        with pytest.raises(GuardError) as err:
            hub.resolve(ov_model, variant, backend=backend)
        assert err.value.code == ExitCode.MODEL
        assert "guardcli[openvino]" in (err.value.hint or "")
    assert hub.resolve(ov_model).backend == "onnxruntime"


@pytest.mark.slow
def test_probe_cpu_verify_times_openvino_and_stores_the_order(runner, tmp_path, monkeypatch):
    from guardcli.runtime import gemm_check as matmul_check

    store = tmp_path / "probe.json"
    monkeypatch.setenv("GUARD_PROBE_RESULT", str(store))
    monkeypatch.setattr(matmul_check, "DEFAULT_SHAPE", (16, 64, 128))
    monkeypatch.setattr(matmul_check, "SECONDS_PER_VARIANT", 0.05)
    result = invoke(runner, ["probe-cpu", "--verify", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {r["variant"] for r in report["verify"]["timings"]}
    assert rows == {"fp32", "fp16", "int8", "ov-fp32", "bf16", "ov-int8"}
    stored = json.loads(store.read_text())
    assert report["measured"]["order"] == stored["order"]
    ok = {r["variant"]: r["ratio_vs_fp32"] for r in stored["timings"] if not r["error"]}
    assert stored["order"] == sorted(ok, key=lambda v: -ok[v])
    table = invoke(runner, ["probe-cpu", "--format", "table"])
    assert "auto order:" in table.stdout and str(store) in table.stdout


# ---------------------------------------------------------------- CLI


@pytest.mark.slow
def test_classify_backend_flag(runner, ov_model) -> None:
    args = ["classify", "a lighthouse", "-m", str(ov_model), "-f", "jsonl"]
    result = invoke(runner, [*args, "--backend", "openvino", "--variant", "int8"])
    assert result.exit_code in (0, 1), result.stderr
    assert json.loads(result.stdout)["variant"] == "ov-int8"
    bad = invoke(runner, [*args, "--backend", "onnxruntime", "--variant", "bf16"])
    assert bad.exit_code == ExitCode.INPUT
    assert "The bf16 variant does not run on onnxruntime." in bad.stderr
    unknown = invoke(runner, [*args, "--backend", "cuda"])
    assert unknown.exit_code == ExitCode.INPUT and "Unknown backend 'cuda'." in unknown.stderr


@pytest.mark.slow
def test_classify_timings(runner, ov_model, monkeypatch) -> None:
    args = ["classify", "a lighthouse", "-m", str(ov_model), "-f", "jsonl", "-q"]
    result = invoke(runner, [*args, "--variant", "ov-int8", "--timings"])
    assert result.exit_code in (0, 1), result.stderr
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("timings:"))
    for stage in ("tokenizer load", "session load", "inference", "total"):
        assert stage in line
    assert json.loads(result.stdout)["variant"] == "ov-int8"  # stdout stays data
    monkeypatch.setenv("GUARD_TIMING", "1")
    assert "timings:" in invoke(runner, [*args, "--variant", "fp32"]).stderr


@pytest.fixture
def native_bf16(monkeypatch) -> None:
    """This CPU, said to have avx512_bf16: `--variant all` then times OpenVINO's bf16 hint."""
    import dataclasses

    from guardcli.core import cpu

    here = cpu.read_cpu()
    with_bf16 = dataclasses.replace(here, flags=here.flags | {"avx512_bf16"})
    monkeypatch.setattr(cpu, "read_cpu", lambda path=None: with_bf16 if path is None else here)


@pytest.mark.slow
def test_bench_compares_every_path_with_agreement(runner, ov_model, native_bf16) -> None:
    args = ["bench", "-m", str(ov_model), "--variant", "all", "--batch-size", "2"]
    result = invoke(runner, [*args, "--seq-len", "8", "--duration", "0.1", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {r["variant"]: r for r in report["results"]}
    assert list(rows) == ["fp32", "int8", "ov-fp32", "bf16", "ov-int8"]
    assert rows["ov-int8"]["backend"] == "openvino-cpu"
    assert rows["int8"]["backend"] == "onnxruntime-cpu"
    assert rows["fp32"]["max_abs_diff_vs_fp32"] == 0.0
    assert rows["ov-fp32"]["max_abs_diff_vs_fp32"] < 1e-3
    assert rows["ov-fp32"]["flag_agreement_vs_fp32"] == 1.0
    assert report["machine"]["openvino"]


def test_bench_backend_picks_that_runtimes_paths() -> None:
    from guardcli.jobs.bench.runner import parse_variants

    present = ["fp32", "fp16", "int8", "ov-fp32", "bf16", "ov-int8"]
    assert parse_variants("int8,fp32", present, "openvino") == ["ov-fp32", "ov-int8"]
    assert parse_variants("all", present, "openvino") == ["ov-fp32", "bf16", "ov-int8"]
    assert parse_variants("all", present, "onnxruntime") == ["fp32", "fp16", "int8"]
    assert parse_variants("ov-int8,fp32", present) == ["fp32", "ov-int8"]
    with pytest.raises(GuardError, match="does not run on openvino"):
        parse_variants("fp16", present, "openvino")


def test_quantize_usage_errors(runner, tmp_path) -> None:
    result = invoke(runner, ["quantize", str(tmp_path), "--backend", "tflite"])
    assert result.exit_code == ExitCode.INPUT and "Unknown backend 'tflite'." in result.stderr
    result = invoke(runner, ["quantize", str(tmp_path / "nope")])
    assert result.exit_code == ExitCode.INPUT and "does not exist" in result.stderr


@pytest.mark.parametrize("command", ["classify", "bench", "sweep"])
def test_backend_option_on_every_runner(runner, command) -> None:
    result = invoke(runner, [command, "--help"])
    assert "--backend" in result.stdout and "openvino" in result.stdout


@pytest.mark.slow
def test_graph_cache_can_be_turned_off(tiny_model, tmp_path, monkeypatch) -> None:
    from guardcli.runtime.onnx_session import OnnxSession

    monkeypatch.setenv("GUARD_GRAPH_CACHE", "0")
    folder = tmp_path / "onnx"
    folder.mkdir()
    shutil.copy(tiny_model / "onnx" / "model_quantized.onnx", folder / "model.onnx")
    session = OnnxSession(folder / "model.onnx")
    assert session.optimized is None and not (folder / ".cache").exists()


def test_without_native_bf16_the_flags_rank_bf16_last() -> None:
    from guardcli.core.variants import openvino_order

    assert openvino_order({"avx512f", "amx_bf16", "amx_int8"}) == ["ov-int8", "bf16", "ov-fp32"]
    assert openvino_order({"avx512f", "avx512_vnni"}) == ["ov-int8", "ov-fp32", "bf16"]


@pytest.mark.slow
def test_a_session_without_prepacking_gives_the_same_logits(tiny_model) -> None:
    from guardcli.runtime.onnx_session import OnnxSession

    ids, mask = _batch(tiny_model)
    for name in ("model.onnx", "model_quantized.onnx"):
        graph = tiny_model / "onnx" / name
        packed = OnnxSession(graph, cache=False).run(ids, mask)
        unpacked = OnnxSession(graph, cache=False, prepack=False).run(ids, mask)
        np.testing.assert_allclose(unpacked, packed, atol=1e-5)


@pytest.mark.parametrize(
    ("texts", "input_path", "expected"),
    [
        (["a lighthouse"], None, True),
        (["a", "b", "c"], None, True),
        ([f"p{i}" for i in range(9)], None, False),  # more than one short batch
        (["x" * 5000], None, False),
        (["-"], None, False),  # stdin: length unknown
        ([], "prompts.jsonl", False),
    ],
)
def test_only_a_few_short_argument_prompts_skip_prepacking(texts, input_path, expected) -> None:
    from guardcli.cli._classify_run import _one_shot

    assert _one_shot(texts, input_path, None) is expected


@pytest.mark.slow
def test_classify_from_arguments_loads_a_one_shot_session(runner, tiny_model, monkeypatch):
    from guardcli.runtime import onnx_session

    seen: list[bool] = []
    real = onnx_session.OnnxSession.__init__

    def spy(self, path, **kwargs):
        seen.append(kwargs.get("prepack", True))
        real(self, path, **kwargs)

    monkeypatch.setattr(onnx_session.OnnxSession, "__init__", spy)
    args = ["classify", "-m", str(tiny_model), "-f", "jsonl", "-q", "--variant", "int8"]
    one = invoke(runner, [*args, "a lighthouse"])
    many = invoke(runner, args, input="a lighthouse\n")  # stdin: the same prompt, prepacked
    assert one.exit_code in (0, 1) and many.exit_code in (0, 1), one.stderr + many.stderr
    assert seen == [False, True]
    assert json.loads(one.stdout)["score"] == pytest.approx(json.loads(many.stdout)["score"])


@pytest.mark.slow
def test_compare_takes_openvino_variants(runner, ov_model) -> None:
    data = SAMPLES / "labelled.jsonl"
    args = ["compare", str(ov_model), "--data", str(data), "--no-stability", "-f", "json"]
    result = invoke(runner, [*args, "--variants", "ov-fp32,ov-int8"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["variants"]) == ["fp32", "ov-fp32", "ov-int8"]
    # The same FP32 graph on another runtime: no decision may flip.
    assert report["variants"]["ov-fp32"]["flips"]["count"] == 0
    assert report["variants"]["ov-fp32"]["delta"]["max"] < 1e-3


def test_all_leaves_out_emulated_bf16_unless_named() -> None:
    from guardcli.jobs.bench.runner import without_emulated

    paths = ["fp32", "int8", "ov-fp32", "bf16", "ov-int8"]
    assert without_emulated(paths, {"avx2", "avx512_vnni"}) == (
        ["fp32", "int8", "ov-fp32", "ov-int8"],
        ["bf16"],
    )
    for native in ({"amx_bf16"}, {"avx512_bf16"}, {"bf16"}):
        assert without_emulated(paths, native) == (paths, [])


@pytest.mark.slow
def test_bench_all_says_what_it_left_out(runner, ov_model, monkeypatch) -> None:
    import dataclasses

    from guardcli.core import cpu

    here = cpu.read_cpu()
    plain = dataclasses.replace(here, flags=here.flags - {"amx_bf16", "avx512_bf16", "bf16"})
    monkeypatch.setattr(cpu, "read_cpu", lambda path=None: plain)
    args = ["bench", "-m", str(ov_model), "--variant", "all", "--batch-size", "1"]
    result = invoke(runner, [*args, "--seq-len", "8", "--duration", "0.1", "-f", "json"])
    assert result.exit_code == 0, result.stderr
    assert "left out bf16" in result.stderr
    assert "bf16" not in {r["variant"] for r in json.loads(result.stdout)["results"]}
