"""Batch invariance: a text's score is the score it gets alone, whatever shares its batch.

Every family and every variant it offers, alone vs in one mixed-length padded batch vs next to an
adversarial record (one rare token repeated: extreme activations), locally, through the serve
micro-batcher and on Ray. Dynamic INT8 with one activation scale per tensor broke this; INT8
activations are now quantized per row (runtime.int8_rows), and published per-tensor graphs are
rewritten at load time, or run one row at a time without the `onnx` package.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from guardcli import load_guard
from guardcli.core.verdicts import Record
from guardcli.runtime.int8_rows import REWRITE_VERSION

from ..conftest import SAMPLES

TOL = 1e-5
TEXTS = [
    "a watercolor of a lighthouse",
    "hello",
    "the harbour wall at dawn, with gulls over the grey water and a small boat " * 4,
    "x",
    "a recipe for bread with seeds and honey, baked in a clay oven at the market",
    "garden " * 30,
]
# One rare token repeated: the record whose extreme activations coarsened everyone's scale.
ADVERSARIAL = "Ж" * 300


def _scores(guard, items) -> list[float | None]:
    return [v.score for v in guard.classify(items)]


def assert_batch_invariant(guard, items=TEXTS, adversarial=ADVERSARIAL) -> list[float]:
    """Each item alone, all in one batch, and all in one batch after the adversarial record:
    the same score within TOL. Returns the scores alone."""
    guard.batch_size, guard.token_budget = 256, 10**7  # one batch for all, padding included
    alone = [_scores(guard, [item])[0] for item in items]
    assert all(s is not None for s in alone)
    batches: list[int] = []
    records = [Record(id=i, text=t) if isinstance(t, str) else t for i, t in enumerate(items)]
    batched = [v.score for v in guard.classify_records(records, on_batch=batches.append)]
    assert batches == [len(items)]
    attacked = _scores(guard, [adversarial, *items])[1:]
    np.testing.assert_allclose(batched, alone, atol=TOL, rtol=0)
    np.testing.assert_allclose(attacked, alone, atol=TOL, rtol=0)
    return alone  # type: ignore[return-value]


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".cache"))
    return dst


def _per_tensor_int8(folder: Path) -> Path:
    """Replace folder's INT8 graph with the per-tensor dynamic one onnxruntime's quantizer
    writes, as published INT8 files are."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from guardcli.runtime.onnx_recipes import int8_excluded_nodes

    src = folder / "onnx" / "model.onnx"
    dst = folder / "onnx" / "model_quantized.onnx"
    for stale in folder.glob("onnx/model_quantized.onnx*"):
        stale.unlink()
    quantize_dynamic(
        str(src),
        str(dst),
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=int8_excluded_nodes(src, ["down_proj"]),
    )
    return folder


@pytest.fixture(scope="module")
def per_tensor_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _per_tensor_int8(_copy_model(tiny_model, tmp_path_factory.mktemp("pt") / "csam"))


# ------------------------------------------------------------------------ the rewrite itself


def _run(path: Path, feed: dict, *, optimize: bool) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_per_row_matmul_equals_a_numpy_reference(tmp_path: Path) -> None:
    """One MatMul quantized by the recipe equals per-row symmetric quantization computed in
    numpy from the quantized weights: q = round(x / s) with s = max|x| / 127 for each row."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from guardcli.runtime.onnx_recipes import to_int8_dynamic

    rng = np.random.default_rng(0)
    w = rng.normal(size=(64, 24)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="proj/MatMul")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", "s", 24])],
        [numpy_helper.from_array(w, "w")],
    )
    fp32 = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), fp32)
    int8 = tmp_path / "mm_int8.onnx"
    to_int8_dynamic(fp32, int8, keep_float=())
    model = onnx.load(str(int8))
    ops = {n.op_type for n in model.graph.node}
    assert "MatMulIntegerToFloat" in ops and "DynamicQuantizeLinear" not in ops
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    wq = next(v for v in inits.values() if v.dtype == np.int8 and v.ndim == 2).astype(np.int64)
    ws = next(v for k, v in inits.items() if k.endswith("_scale") and v.size == 24)

    x = rng.normal(size=(3, 5, 64)).astype(np.float32)
    x[1, 2] *= 1000.0  # one extreme row
    s = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-12) / np.float32(127)
    q = np.rint(x / s).astype(np.int64)
    expected = (q @ wq).astype(np.float32) * ws * s
    for optimize in (False, True):
        got = _run(int8, {"x": x}, optimize=optimize)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        alone = _run(int8, {"x": x[:1, :1]}, optimize=optimize)
        np.testing.assert_array_equal(alone, got[:1, :1])
    exact = x @ w  # and close to FP32, relative to each row's magnitude
    err = np.abs(_run(int8, {"x": x}, optimize=True) - exact)
    assert (err <= 0.05 * np.abs(exact).max(axis=-1, keepdims=True)).all()


@pytest.mark.slow
def test_rewritten_graph_keeps_its_meaning_under_onnxruntime_fusions(per_tensor_model) -> None:
    """onnxruntime's MatMulIntegerToFloat fusion reads one activation scale per tensor: the
    rewrite is laid out so that it does not apply, and optimized equals unoptimized."""
    import onnx

    from guardcli.runtime.int8_rows import rewrite_file

    src = per_tensor_model / "onnx" / "model_quantized.onnx"
    dst = per_tensor_model.parent / "rows.onnx"
    assert rewrite_file(src, dst) > 0
    assert {"DynamicQuantizeLinear", "DynamicQuantizeMatMul"}.isdisjoint(
        n.op_type for n in onnx.load(str(dst)).graph.node
    )
    ids = np.random.default_rng(1).integers(5, 1000, size=(4, 20)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 7:] = mask[2, 12:] = 0
    feed = {"input_ids": ids, "attention_mask": mask}
    np.testing.assert_allclose(
        _run(dst, feed, optimize=True), _run(dst, feed, optimize=False), atol=1e-5, rtol=0
    )


@pytest.mark.slow
def test_onnxruntime_optimized_dynamic_quantize_matmul_is_rewritten(
    per_tensor_model: Path, tmp_path: Path
) -> None:
    """A graph saved after onnxruntime's optimizer holds DynamicQuantizeMatMul (the fused
    per-tensor form): it is rewritten too, and then batch-invariant."""
    import onnx
    import onnxruntime as ort

    from guardcli.runtime.int8_rows import per_tensor_dynamic_nodes
    from guardcli.runtime.onnx_session import OnnxSession

    fused = tmp_path / "fused.onnx"
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(fused)
    ort.InferenceSession(
        str(per_tensor_model / "onnx" / "model_quantized.onnx"),
        opts,
        providers=["CPUExecutionProvider"],
    )
    model = onnx.load(str(fused))
    assert any(n.op_type == "DynamicQuantizeMatMul" for n in model.graph.node)
    assert per_tensor_dynamic_nodes(model)
    session = OnnxSession(fused, cache=False)
    assert session.graph is not None and session.graph.rewritten
    rng = np.random.default_rng(2)
    rows = [rng.integers(5, 1000, size=n).tolist() for n in (3, 17, 9)]
    rows.append([7] * 60)  # adversarial: one token repeated
    from guardcli.core.batching import pad

    ids, mask = pad(rows, 0)
    batched = session.run(ids, mask)
    for r, row in enumerate(rows):
        alone = session.run(np.array([row]), np.ones((1, len(row)), dtype=np.int64))
        np.testing.assert_allclose(batched[r : r + 1], alone, atol=TOL, rtol=0)


# ------------------------------------------------------------------ published per-tensor INT8


@pytest.mark.slow
def test_per_tensor_int8_depends_on_its_batch_when_run_as_it_is(per_tensor_model: Path) -> None:
    """The defect, shown on the graph as onnxruntime's quantizer writes it."""
    from guardcli.core.batching import pad
    from guardcli.core.tokenize import TextTokenizer
    from guardcli.runtime.onnx_session import OnnxSession

    session = OnnxSession(per_tensor_model / "onnx" / "model_quantized.onnx", per_row=False)
    tok = TextTokenizer(per_tensor_model, 512)
    encoded = [e.ids for e in tok.encode([*TEXTS, ADVERSARIAL])]
    ids, mask = pad(encoded, tok.pad_id)
    batched = session.run(ids, mask)
    alone = np.concatenate([session.run(*pad([e], tok.pad_id)) for e in encoded])
    assert np.abs(batched - alone).max() > 1e-3


@pytest.mark.slow
def test_published_per_tensor_int8_is_rewritten_with_a_note(
    per_tensor_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="guardcli"):
        guard = load_guard(per_tensor_model, variant="int8")
        assert_batch_invariant(guard)
    notes = [r.getMessage() for r in caplog.records if r.name == "guardcli"]
    assert notes == [
        "note: model_quantized.onnx quantizes activations per tensor (a score would depend on "
        "its batch); running it rewritten to per-row scales"
    ]
    folder = per_tensor_model / "onnx" / ".cache" / "guardcli"
    cached = list(folder.glob(f"*.rows{REWRITE_VERSION}.onnx"))
    assert len(cached) == 1  # the rewrite is cached beside the model, loaded next time


@pytest.mark.slow
def test_published_per_tensor_int8_runs_row_at_a_time_without_onnx(
    per_tensor_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    monkeypatch.setenv("GUARD_GRAPH_CACHE", "0")
    with caplog.at_level(logging.WARNING, logger="guardcli"):
        guard = load_guard(per_tensor_model, variant="int8")
        assert guard.session.rows_alone
        assert_batch_invariant(guard)
    notes = [r.getMessage() for r in caplog.records if r.name == "guardcli"]
    assert len(notes) == 1 and notes[0].endswith(
        "and the 'onnx' package is not installed (install guardcli[export]): "
        "running one row at a time"
    )


def test_graphs_the_recipe_writes_need_no_rewrite(tiny_model: Path) -> None:
    from guardcli.runtime.int8_rows import quantizes_per_tensor

    assert not quantizes_per_tensor(tiny_model / "onnx" / "model_quantized.onnx")


# ------------------------------------------------------------------------ every family/variant


@pytest.fixture(scope="module")
def ov_models(tiny_model: Path, intent_model: Path, tmp_path_factory: pytest.TempPathFactory):
    """Copies of the tiny CSAM-Guard and dialogue models with an NNCF ov-int8 beside them."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from guardcli.jobs.convert.openvino_quant import quantize_openvino

    calibration = tmp_path_factory.mktemp("cal") / "calibration.jsonl"
    lines = (SAMPLES / "prompts.jsonl").read_text(encoding="utf-8").splitlines()[:8]
    calibration.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = {}
    for name, src in (("csam-guard", tiny_model), ("dialogue", intent_model)):
        folder = _copy_model(src, tmp_path_factory.mktemp("ov") / name)
        quantize_openvino(folder, calibration=calibration, max_length=128)
        out[name] = folder
    return out


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8", "ov-fp32", "bf16", "ov-int8"])
def test_csam_guard_every_variant(ov_models, variant: str) -> None:
    assert_batch_invariant(load_guard(ov_models["csam-guard"], variant=variant))


# The dialogue graph counts positions from the mask: left padding would otherwise shift every
# rotary angle, which cancels in exact arithmetic but not in FP16/bf16 rounding.
@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8", "ov-fp32", "bf16", "ov-int8"])
def test_dialogue_intent_every_variant(ov_models, variant: str) -> None:
    guard = load_guard(ov_models["dialogue"], variant=variant)
    items = [
        *TEXTS[:4],
        {
            "messages": [
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi"},
                {"role": "user", "content": "a lighthouse at dusk, please"},
            ]
        },
    ]
    records = [
        Record(id=i, text=t) if isinstance(t, str) else Record(id=i, **t)
        for i, t in enumerate(items)
    ]
    assert_batch_invariant(guard, records, adversarial=Record(id="adv", text=ADVERSARIAL))


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["opencc_cm", "opencc_jb"])
def test_opencc_torch(request: pytest.FixtureRequest, fixture: str) -> None:
    assert_batch_invariant(load_guard(request.getfixturevalue(fixture), backend="torch"))


@pytest.fixture(scope="module")
def opencc_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny OpenCC model on a Qwen3 base (one ONNX can export), exported, with INT8 beside."""
    from guardcli.families.opencc.export import export_opencc
    from guardcli.families.opencc.synthetic import synth_opencc
    from guardcli.jobs.convert.quantize import quantize_model

    path = synth_opencc(tmp_path_factory.mktemp("models") / "opencc-cm-q3", base="qwen3")
    export_opencc(path, path)
    quantize_model(path, ["fp16", "int8"])
    return path


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_opencc_onnx(opencc_onnx: Path, variant: str) -> None:
    assert_batch_invariant(load_guard(opencc_onnx, variant=variant))


@pytest.fixture(scope="module")
def qwen3guard_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained Qwen3Guard-Gen with an INT8 graph from `guard quantize`."""
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard
    from guardcli.jobs.convert.quantize import quantize_model

    folder = _copy_model(cached_tiny_qwen3guard(), tmp_path_factory.mktemp("q3g") / "q3g")
    quantize_model(folder, ["int8"])
    return folder


@pytest.mark.parametrize(
    ("variant", "backend"), [("fp32", "onnxruntime"), ("int8", "onnxruntime"), ("auto", "torch")]
)
@pytest.mark.slow
def test_qwen3guard_score_mode(qwen3guard_int8: Path, variant: str, backend: str) -> None:
    guard = load_guard(qwen3guard_int8, variant=variant, backend=backend, generate=False)
    assert_batch_invariant(guard, TEXTS[:4])


@pytest.mark.slow
def test_qwen3guard_published_per_tensor_int8_is_rewritten(qwen3guard_int8: Path, tmp_path):
    folder = _per_tensor_int8(_copy_model(qwen3guard_int8, tmp_path / "q3g"))
    guard = load_guard(folder, variant="int8", backend="onnxruntime", generate=False)
    assert_batch_invariant(guard, TEXTS[:4])


# ------------------------------------------------------------------------------ serve and Ray


def test_serve_micro_batches_leave_every_clients_score_alone(tiny_model: Path) -> None:
    """Concurrent requests from several clients coalesce into one model call; each client's
    scores are the ones its texts get alone, even next to another client's adversarial text."""
    from guardcli.jobs.serve.batcher import MicroBatcher

    guard = load_guard(tiny_model, variant="int8")
    guard.batch_size, guard.token_budget = 64, 10**7
    alone = {t: _scores(guard, [t])[0] for t in [*TEXTS, ADVERSARIAL]}
    sizes: list[int] = []

    def classify(records):
        sizes.append(len(records))
        return guard.classify_records(records)

    async def main():
        batcher = MicroBatcher(classify, max_batch=64, max_wait_ms=200)
        await batcher.start()
        try:
            jobs = [batcher.submit([Record(id="adv", text=ADVERSARIAL)])]
            jobs += [batcher.submit([Record(id=i, text=t)]) for i, t in enumerate(TEXTS)]
            return await asyncio.gather(*jobs)
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert max(sizes) > 1  # requests really shared a batch
    for (verdict,), text in zip(results[1:], TEXTS, strict=True):
        assert verdict.score == pytest.approx(alone[text], abs=TOL)


@pytest.mark.slow
def test_ray_partitions_leave_scores_alone(tiny_model: Path, tmp_path: Path) -> None:
    """`classify --engine ray` with 2 workers (records split and batched differently from
    alone): every INT8 score is its score alone."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    from typer.testing import CliRunner

    from ..conftest import invoke

    guard = load_guard(tiny_model, variant="int8")
    texts = [*TEXTS, ADVERSARIAL] * 3
    alone = [_scores(guard, [t])[0] for t in texts]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "verdicts"
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    try:
        args = ["classify", "--model", str(tiny_model), "--variant", "int8", "--engine", "ray"]
        result = invoke(CliRunner(), [*args, "--workers", "2", "-i", str(src), "-o", str(out)])
    finally:
        ray.shutdown()
    assert result.exit_code in (0, 1), result.stderr
    rows = [json.loads(line) for shard in sorted(out.glob("part-*.jsonl")) for line in shard.open()]
    got = {int(r["id"]): r["score"] for r in rows}
    assert len(got) == len(texts)
    for i, score in enumerate(alone):
        assert got[i] == pytest.approx(score, abs=TOL), i
