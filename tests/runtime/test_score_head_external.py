"""A causal LM graph with its weights in an external-data file (every full-size export): the
restricted score head's copy, written under the graph's .cache folder, loads in onnxruntime
(which refuses external data reached through a symlink out of the model's folder) and gives
the full-vocabulary logits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

IDS = [21_000, 5, 151_000]


@pytest.mark.slow  # writes an ~80 MB copy of the tiny graph
def test_score_head_of_an_external_data_graph_loads(tmp_path: Path) -> None:
    import onnx

    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard
    from guardcli.runtime.causal_lm import OnnxCausalLM

    tiny = cached_tiny_qwen3guard()
    for name in ("config.json", "generation_config.json"):
        shutil.copy(tiny / name, tmp_path / name)
    (tmp_path / "onnx").mkdir()
    graph = tmp_path / "onnx" / "model.onnx"
    onnx.save_model(
        onnx.load(str(tiny / "onnx" / "model.onnx")),
        str(graph),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx_data",
        size_threshold=1024,
    )
    prompts = [[9707, 1879, 11, 42], [100, 7]]
    for stale in (False, True):
        lm = OnnxCausalLM(graph, tmp_path)
        assert lm.score_session(IDS) is not None
        np.testing.assert_allclose(
            lm.score_logits(prompts, IDS), lm.next_logits(prompts)[:, IDS], atol=1e-5, rtol=0
        )
        if not stale:  # a copy cached by an older guardcli: its data linked by a symlink
            [link] = (graph.parent / ".cache").rglob("model.onnx_data")
            link.unlink()
            link.symlink_to(graph.parent / "model.onnx_data")
