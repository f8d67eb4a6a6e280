"""`guard export` against transformers and the PyTorch module it came from; `guard quantize`'s
recipes as they appear in the graphs (which MatMuls are integer, what stays FP32, I/O types)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from guardcli.core.batching import pad
from guardcli.core.tokenize import TextTokenizer
from guardcli.families.seqcls.export import save_card_layout
from guardcli.families.seqcls.synthetic import build_csam_guard_module
from guardcli.runtime.onnx_recipes import to_fp16, to_int8_dynamic
from guardcli.runtime.qwen_tokenizer import write_tokenizer_files
from guardcli.runtime.synthetic import CSAM_GUARD_DIMS, qwen3_config

from ..conftest import SAMPLES, invoke

LAYERS = CSAM_GUARD_DIMS["tiny"].layers
PROMPTS = [json.loads(line)["text"] for line in (SAMPLES / "prompts.jsonl").open()][:10]


@pytest.fixture(scope="session")
def seqcls_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3ForSequenceClassification saved by transformers, with a Qwen3 tokenizer."""
    from transformers import Qwen3ForSequenceClassification

    out = tmp_path_factory.mktemp("ckpt") / "qwen3-seqcls"
    torch.manual_seed(3)
    config = qwen3_config(
        CSAM_GUARD_DIMS["tiny"],
        num_labels=2,
        id2label={0: "benign", 1: "harmful"},
        label2id={"benign": 0, "harmful": 1},
    )
    model = Qwen3ForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.mul_(50.0)  # spread the scores, so flips are possible
    model.save_pretrained(str(out))
    write_tokenizer_files(out, append_eos=False, max_length=512)
    return out


@pytest.fixture(scope="session")
def card_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The card's PyTorch layout (encoder/ + head.pt + model_config.json) of the tiny module."""
    out = tmp_path_factory.mktemp("ckpt") / "card"
    module = build_csam_guard_module("tiny", seed=0)
    save_card_layout(module.model, module.head, out, max_length=384)
    write_tokenizer_files(out, append_eos=True, max_length=384)
    return out


@pytest.fixture(scope="session")
def seqcls_out(seqcls_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from typer.testing import CliRunner

    out = tmp_path_factory.mktemp("exported") / "seqcls"
    stale = out / "onnx" / "model_quantized.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_text("made from an earlier export")
    result = invoke(CliRunner(), ["export", str(seqcls_src), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert not stale.exists() and f"removing {stale}" in result.stderr
    assert result.stdout == f"{out}\n"
    assert "max |Δ logit|" in result.stderr
    return out


@pytest.fixture(scope="session")
def quantized(seqcls_out: Path) -> Path:
    from typer.testing import CliRunner

    result = invoke(CliRunner(), ["quantize", str(seqcls_out), "--to", "fp16,int8"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(seqcls_out / "onnx" / "model_fp16.onnx"),
        str(seqcls_out / "onnx" / "model_quantized.onnx"),
    ]
    return seqcls_out


def batch(model_dir: Path, max_length: int = 384) -> tuple[np.ndarray, np.ndarray]:
    tok = TextTokenizer(model_dir, max_length)
    return pad([e.ids for e in tok.encode(PROMPTS)], tok.pad_id)


def run_onnx(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]


def io_types(path: Path) -> dict[str, tuple[int, list]]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return {
        v.name: (
            v.type.tensor_type.elem_type,
            [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim],
        )
        for v in [*graph.input, *graph.output]
    }


# ---------------------------------------------------------------------------- export


@pytest.mark.slow
def test_export_seqcls_equals_transformers(seqcls_src: Path, seqcls_out: Path) -> None:
    """transformers' own forward (its 2-D mask, its rightmost-non-pad pooling) is the reference."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(seqcls_src)).eval()
    ids, mask = batch(seqcls_src)
    assert mask.min() == 0  # the batch is padded
    with torch.no_grad():
        expected = model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
        ).logits.numpy()
    got = run_onnx(seqcls_out / "onnx" / "model.onnx", ids, mask)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_export_seqcls_left_padded_rows_score_as_alone(seqcls_src: Path, seqcls_out: Path) -> None:
    """A decoder classifier padded on the left (the dialogue family's side) gets the positions
    it has alone: the exported graph counts them from the mask, transformers (run unpadded) is
    the reference."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(str(seqcls_src)).eval()
    tok = TextTokenizer(seqcls_src, 384)
    rows = [e.ids for e in tok.encode(PROMPTS)]
    width = max(map(len, rows))
    assert min(map(len, rows)) < width  # some row is padded
    ids = np.full((len(rows), width), tok.pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = row
        mask[i, width - len(row) :] = 1
    got = run_onnx(seqcls_out / "onnx" / "model.onnx", ids, mask)
    with torch.no_grad():
        alone = np.concatenate(
            [model(input_ids=torch.tensor([row])).logits.numpy() for row in rows]
        )
    np.testing.assert_allclose(got, alone, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_export_layout(seqcls_src: Path, seqcls_out: Path) -> None:
    FLOAT, INT64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
    assert io_types(seqcls_out / "onnx" / "model.onnx") == {
        "input_ids": (INT64, ["batch", "sequence"]),
        "attention_mask": (INT64, ["batch", "sequence"]),
        "logits": (FLOAT, ["batch", 2]),
    }
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (seqcls_out / name).read_bytes() == (seqcls_src / name).read_bytes()
    config = json.loads((seqcls_out / "config.json").read_text())
    assert config["id2label"] == {"0": "benign", "1": "harmful"}
    # the tokenizer's model_max_length
    assert config["guardcli"] == {"max_length": 512, "exported_from": "seqcls"}
    from guardcli.core.resolve import resolve

    assert resolve(seqcls_out, "fp32").max_length == 512  # classify uses the export's length


@pytest.mark.slow
def test_export_card_layout_and_the_tolerance(runner, card_src: Path, tmp_path: Path) -> None:
    """One export of the card's layout: with --tolerance 0 it must fail (exit 3) and leave its
    files for a look; the figure it prints and the graph both match the PyTorch module."""
    out = tmp_path / "card"
    result = invoke(runner, ["export", str(card_src), "--out", str(out), "--tolerance", "0"])
    assert result.exit_code == 3
    assert result.stdout == ""
    message = re.search(
        r"The ONNX export differs from PyTorch: max \|Δ logit\| (\S+) > 0 on 6 prompts\.",
        result.stderr,
    )
    assert message and 0 < float(message.group(1)) < 1e-4
    assert f"Do not ship {out / 'onnx' / 'model.onnx'}." in result.stderr
    ids, mask = batch(out)
    module = build_csam_guard_module("tiny", seed=0)
    with torch.no_grad():
        expected = module(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(
        run_onnx(out / "onnx" / "model.onnx", ids, mask), expected, atol=1e-5, rtol=0
    )
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "safe", "1": "unsafe"}
    assert config["guardcli"] == {"max_length": 384, "exported_from": "card"}


def test_export_rejects_other_checkpoints(runner, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "config.json").write_text('{"architectures": ["Qwen3Model"]}')
    result = invoke(runner, ["export", str(tmp_path / "src"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "is neither a sequence-classification checkpoint nor the card's layout" in (
        result.stderr
    )
    no_out = invoke(runner, ["export", str(tmp_path / "src")])
    assert no_out.exit_code == 2 and "--out DIR" in no_out.stderr


@pytest.mark.slow
def test_card_head_must_match_model_config(runner, card_src: Path, tmp_path: Path) -> None:
    import shutil

    src = tmp_path / "card"
    shutil.copytree(card_src, src)
    cfg = json.loads((src / "model_config.json").read_text())
    (src / "model_config.json").write_text(json.dumps({**cfg, "head_hidden": 7}))
    result = invoke(runner, ["export", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "model_config.json says head_hidden 7, but head.pt has 32." in result.stderr


# ---------------------------------------------------------------------------- quantize


def weight_matmuls(graph) -> list:
    """MatMuls against a weight (attention's activation x activation MatMuls have none)."""
    weights = {t.name for t in graph.initializer}
    return [n for n in graph.node if n.op_type == "MatMul" and any(i in weights for i in n.input)]


@pytest.mark.slow
def test_fp16_recipe(quantized: Path) -> None:
    path = quantized / "onnx" / "model_fp16.onnx"
    assert io_types(path) == io_types(quantized / "onnx" / "model.onnx")  # I/O stays FP32
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    norms = [
        n
        for n in model.graph.node
        if n.op_type in ("Pow", "ReduceMean", "Sqrt") and "norm" in n.name
    ]
    assert len(norms) == 3 * (4 * LAYERS + 1)
    assert {types[n.output[0]] for n in norms} == {onnx.TensorProto.FLOAT}
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert {types[n.output[0]] for n in matmuls} == {onnx.TensorProto.FLOAT16}
    ids, mask = batch(quantized)
    fp32 = run_onnx(quantized / "onnx" / "model.onnx", ids, mask)
    assert np.abs(run_onnx(path, ids, mask) - fp32).max() < 0.05


@pytest.mark.slow
def test_int8_dynamic_recipe(quantized: Path) -> None:
    path = quantized / "onnx" / "model_quantized.onnx"
    assert io_types(path) == io_types(quantized / "onnx" / "model.onnx")
    graph = onnx.load(str(path)).graph
    kept = [n.name for n in weight_matmuls(graph)]
    assert sorted(kept) == [f"/model/layers.{i}/mlp/down_proj/MatMul" for i in range(LAYERS)]
    # q/k/v/o, gate/up per layer and the score head are integer.
    integer = [n for n in graph.node if n.op_type == "MatMulIntegerToFloat"]
    assert len(integer) >= 6 * LAYERS + 1
    assert all("down_proj" not in n.name for n in integer)
    weights = {t.name: t for t in graph.initializer}
    for n in integer:
        weight, zero_point = weights[n.input[1]], weights[n.input[5]]  # per-row INT8
        assert weight.data_type == onnx.TensorProto.INT8  # QInt8 weights
        assert list(zero_point.dims) == [weight.dims[1]]  # per output channel


@pytest.mark.slow
def test_keep_float_is_repeatable(runner, seqcls_out: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "m"
    shutil.copytree(seqcls_out, model, ignore=shutil.ignore_patterns("model_*.onnx"))
    result = invoke(
        runner,
        [
            "quantize",
            str(model),
            "--to",
            "int8",
            "--keep-float",
            "down_proj",
            "--keep-float",
            "/score/",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert f"{LAYERS + 1} MatMuls kept FP32" in result.stderr
    kept = {
        n.name
        for n in weight_matmuls(onnx.load(str(model / "onnx" / "model_quantized.onnx")).graph)
    }
    assert "/score/MatMul" in kept and len(kept) == LAYERS + 1


@pytest.mark.slow
def test_keep_float_matches_weight_names(seqcls_out: Path, tmp_path: Path) -> None:
    """Another exporter: anonymous node names, weights named after the parameters."""
    model = onnx.load(str(seqcls_out / "onnx" / "model.onnx"))
    renames = {}
    for n in model.graph.node:
        if n.op_type == "MatMul" and "down_proj" in n.name:
            layer = n.name.split("/")[2]
            renames[n.input[1]] = f"model.{layer}.mlp.down_proj.weight"
    for t in model.graph.initializer:
        t.name = renames.get(t.name, t.name)
    for i, n in enumerate(model.graph.node):
        n.name = f"node_{n.op_type}_{i}"
        n.input[:] = [renames.get(x, x) for x in n.input]
    src, dst = tmp_path / "other.onnx", tmp_path / "other_int8.onnx"
    onnx.save(model, str(src))
    excluded = to_int8_dynamic(src, dst)
    assert len(excluded) == LAYERS and all(e.startswith("node_MatMul_") for e in excluded)
    graph = onnx.load(str(dst)).graph
    floats = weight_matmuls(graph)
    assert {n.name for n in floats} == set(excluded)
    assert all("down_proj" in n.input[1] for n in floats)


@pytest.mark.slow
def test_quantize_a_folder_of_links(seqcls_out: Path, tmp_path: Path) -> None:
    """The Hugging Face cache links every file; onnx will not read external data through a link,
    so quantize works on a private copy and leaves the linked files alone."""
    from guardcli.jobs.convert.quantize import quantize_model
    from guardcli.runtime.onnx_recipes import save_onnx

    blobs = tmp_path / "blobs"
    save_onnx(
        onnx.load(str(seqcls_out / "onnx" / "model.onnx")),
        blobs / "model.onnx",
        force_external=True,
    )
    snapshot = tmp_path / "snapshot"
    (snapshot / "onnx").mkdir(parents=True)
    for name in ("model.onnx", "model.onnx_data"):
        (snapshot / "onnx" / name).symlink_to(blobs / name)
    for f in seqcls_out.iterdir():
        if f.is_file():
            (snapshot / f.name).symlink_to(f)
    results = quantize_model(snapshot, ["fp16", "int8"])
    assert [r.variant for r in results] == ["fp16", "int8"]
    # The same recipes on the plain files give the same graphs.
    to_fp16(blobs / "model.onnx", tmp_path / "ref" / "model_fp16.onnx")
    to_int8_dynamic(blobs / "model.onnx", tmp_path / "ref" / "model_quantized.onnx")
    ids, mask = batch(seqcls_out)
    for r in results:
        assert not r.path.is_symlink()
        ref = tmp_path / "ref" / r.path.name
        np.testing.assert_array_equal(run_onnx(r.path, ids, mask), run_onnx(ref, ids, mask))
    assert (snapshot / "onnx" / "model.onnx").is_symlink()  # the links are left as they were


@pytest.mark.slow
def test_int8_static_recipe(runner, seqcls_out: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "m"
    shutil.copytree(seqcls_out, model, ignore=shutil.ignore_patterns("model_*.onnx"))
    calibration = tmp_path / "calibration.jsonl"
    calibration.write_text("".join(json.dumps({"text": t}) + "\n" for t in PROMPTS[:6]))
    result = invoke(
        runner,
        ["quantize", str(model), "--to", "int8", "--static", "--calibration", str(calibration)],
    )
    assert result.exit_code == 0, result.stderr
    assert "calibrating static INT8 (QDQ) on 6 texts" in result.stderr
    path = model / "onnx" / "model_quantized.onnx"
    assert io_types(path) == io_types(model / "onnx" / "model.onnx")
    graph = onnx.load(str(path)).graph
    producers = {o: n for n in graph.node for o in n.output}
    weights = {t.name for t in graph.initializer}

    def dequantized(name: str) -> bool:
        return name in producers and producers[name].op_type == "DequantizeLinear"

    matmuls = [n for n in graph.node if n.op_type == "MatMul"]
    down = [n for n in matmuls if "down_proj" in n.name]
    assert len(down) == LAYERS
    # down_proj keeps its FP32 weight and FP32 activation; the other projections run on
    # quantize -> dequantize pairs (QDQ), with INT8 weights.
    assert all(n.input[1] in weights and not dequantized(n.input[0]) for n in down)
    others = [n for n in matmuls if "proj" in n.name and "down_proj" not in n.name]
    assert len(others) == 6 * LAYERS
    assert all(dequantized(n.input[0]) and dequantized(n.input[1]) for n in others)
    ids, mask = batch(model)
    fp32 = run_onnx(model / "onnx" / "model.onnx", ids, mask)
    assert np.abs(run_onnx(path, ids, mask) - fp32).max() < 0.5


@pytest.mark.slow
def test_quantize_errors(runner, tmp_path: Path, seqcls_out: Path) -> None:
    result = invoke(runner, ["quantize", str(tmp_path), "--to", "int8"])
    assert result.exit_code == 2
    assert f"{tmp_path} has no onnx/model.onnx to quantize." in result.stderr
    assert "guard export SRC --out DIR" in result.stderr
    result = invoke(runner, ["quantize", str(seqcls_out), "--to", "int8", "--static"])
    assert result.exit_code == 2 and "--static needs --calibration FILE." in result.stderr
    result = invoke(runner, ["quantize", str(seqcls_out), "--to", "int4"])
    assert result.exit_code == 2 and "Unknown --to target int4." in result.stderr
