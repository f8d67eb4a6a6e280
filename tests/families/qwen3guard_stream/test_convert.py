"""`guard export`, `guard fetch` and `guard quantize` of a Qwen3Guard-Stream checkpoint (the hub
repos ship only safetensors): the graphs made from the checkpoint alone against the PyTorch
reference, and the variants made by the family's recipes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from guardcli.families.qwen3guard_stream.export import LOGIT_OUTPUTS
from guardcli.families.qwen3guard_stream.runners import OnnxRunner

from ...conftest import invoke
from ...core.test_fetch import _online
from ...hub_server import HubStub
from .test_export import IDS, reference_logits

runner = CliRunner()
CHECKPOINT = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def checkpoint_only(stream_model: Path, dest: Path) -> Path:
    """The tiny model as the hub ships Qwen3Guard-Stream: no onnx/, no guardcli marker."""
    dest.mkdir()
    for name in CHECKPOINT:
        shutil.copyfile(stream_model / name, dest / name)
    return dest


def streamed(graph: Path) -> list[np.ndarray]:
    """The graph's four logit arrays over IDS, fed as a stream (a prefill, then steps)."""
    run = OnnxRunner(graph)
    parts = [run.feed(chunk) for chunk in (IDS[:6], IDS[6:7], IDS[7:])]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(LOGIT_OUTPUTS))]


def assert_matches_reference(graph: Path, module, tolerance: float = 1e-4) -> None:
    expected = reference_logits(module, IDS)
    for name, have, want in zip(LOGIT_OUTPUTS, streamed(graph), expected, strict=True):
        assert have.shape == want.shape, name
        assert float(np.abs(have - want).max()) <= tolerance, name


@pytest.fixture(scope="module")
def exported(stream_model: Path, tmp_path_factory: pytest.TempPathFactory):
    src = checkpoint_only(stream_model, tmp_path_factory.mktemp("stream-export") / "ckpt")
    out = src.parent / "onnx-model"
    result = invoke(runner, ["export", str(src), "--out", str(out)])
    return src, out, result


@pytest.mark.slow
def test_export_from_the_checkpoint_alone_matches_the_reference(exported, stream_reference):
    src, out, result = exported
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert "(tolerance 0.0001): ok" in result.stderr
    assert "response risk argmax equal to the reference on" in result.stderr
    assert not (src / "onnx").exists()  # the checkpoint is left as it was
    assert_matches_reference(out / "onnx" / "model.onnx", stream_reference)
    # INT8 as synth's fixture makes it: the same recipe on the same graph, the same logits.
    assert (out / "onnx" / "model_quantized.onnx").is_file()


@pytest.mark.slow
def test_exported_int8_is_the_familys_recipe(exported, stream_model: Path) -> None:
    _, out, _ = exported
    have = streamed(out / "onnx" / "model_quantized.onnx")
    want = streamed(stream_model / "onnx" / "model_quantized.onnx")
    for name, a, b in zip(LOGIT_OUTPUTS, have, want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=name)


def test_export_refuses_max_length(stream_model: Path, tmp_path: Path) -> None:
    # Refused at the door: a checkpoint is enough, without the module's export (~7 s).
    src = checkpoint_only(stream_model, tmp_path / "ckpt")
    result = invoke(runner, ["export", str(src), "--out", str(tmp_path / "o"), "--max-length", "9"])
    assert result.exit_code == 2
    assert "--max-length does not apply to a Qwen3Guard-Stream checkpoint." in result.stderr


@pytest.mark.slow
def test_quantize_uses_the_familys_recipes(exported, tmp_path: Path) -> None:
    """FP16 keeps the KV cache FP16 (GroupQueryAttention updates the runner's buffer in place);
    INT8 quantizes every MatMul, as the family's export does; --static is refused."""
    import onnx

    _, out, _ = exported
    model = tmp_path / "m"
    shutil.copytree(out, model)
    result = invoke(runner, ["quantize", str(model), "--to", "fp16,int8"])
    assert result.exit_code == 0, result.stderr
    graph = onnx.load(str(model / "onnx" / "model_fp16.onnx"), load_external_data=False).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output]}
    assert types["past_key_values.0.key"] == types["present.1.value"] == onnx.TensorProto.FLOAT16
    assert {types[n] for n in LOGIT_OUTPUTS} == {onnx.TensorProto.FLOAT}
    int8 = onnx.load(str(model / "onnx" / "model_quantized.onnx"), load_external_data=False)
    assert not [n.name for n in int8.graph.node if n.op_type == "MatMul"]
    assert OnnxRunner(model / "onnx" / "model_fp16.onnx").shared
    static = invoke(
        runner, ["quantize", str(model), "--to", "int8", "--static", "--calibration", __file__]
    )
    assert static.exit_code == 2
    assert "takes a KV cache (past_key_values.*): --static calibrates classifier" in static.stderr


@pytest.mark.slow
def test_fetch_exports_the_stream_checkpoint(
    stream_model: Path, stream_reference, monkeypatch, tmp_path: Path
) -> None:
    """Qwen/Qwen3Guard-Stream-0.6B ships safetensors only: fetch downloads the checkpoint (no
    graph travels), exports FP32 + INT8 locally, and the name then streams offline."""
    from guardcli.families.qwen3guard_stream.load import resolve_stream_model

    repo = checkpoint_only(stream_model, tmp_path / "repo")
    with HubStub("Qwen/Qwen3Guard-Stream-0.6B", repo) as hub:
        _online(monkeypatch, hub.url, tmp_path / "hub")
        result = invoke(runner, ["fetch", "qwen3guard-stream", "--variant", "int8"])
        assert result.exit_code == 0, result.stderr
        assert "model.safetensors" in hub.downloaded()
        assert not any(f.startswith("onnx/") for f in hub.downloaded())
        again = invoke(runner, ["fetch", "qwen3guard-stream", "--variant", "int8", "-q"])
        assert again.exit_code == 0 and "exporting" not in again.stderr
    assert "exporting Qwen/Qwen3Guard-Stream-0.6B to ONNX" in result.stderr
    snapshot = Path(result.stdout.strip())
    assert resolve_stream_model("qwen3guard-stream").variant == "int8"
    fp32 = resolve_stream_model("qwen3guard-stream", "fp32")
    assert fp32.path == snapshot
    assert_matches_reference(fp32.graph, stream_reference)
    assert resolve_stream_model("qwen3guard-stream", "torch").path == snapshot
