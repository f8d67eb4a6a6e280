"""hf-seqcls describes itself to the registry: detection, synth builder, export recipe and
defaults come from its Family, and no shared module names it."""

from __future__ import annotations

import json
from pathlib import Path

from guardcli.core import registry


def test_family_description():
    family = registry.get("hf-seqcls")
    assert family.defaults == (0.5, 512)
    assert family.runs_onnx
    assert registry.synth_builders()["hf-seqcls"][0] is family
    assert family.guard_class().family == "hf-seqcls"


def _config(folder: Path, **config) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_folder_and_export_routing(hf_models, tmp_path):
    from guardcli.jobs.convert.export import export_family

    assert registry.folder_family(hf_models("bert")).name == "hf-seqcls"
    encoder = _config(
        tmp_path / "enc",
        architectures=["DebertaV2ForSequenceClassification"],
        model_type="deberta-v2",
    )
    assert export_family(encoder, None).name == "hf-seqcls"
    # A decoder classifier stays with the seqcls recipe, a causal LM with the generative one.
    decoder = _config(
        tmp_path / "dec", architectures=["Qwen3ForSequenceClassification"], model_type="qwen3"
    )
    assert export_family(decoder, None).name == "seqcls"
    assert registry.folder_family(decoder).name == "seqcls"
    # Asked by name, the other recipe is used even for an encoder.
    assert export_family(encoder, "seqcls").name == "seqcls"
    # A dialogue folder (marker file) is dialogue even when its config names an encoder.
    (encoder / "task_description.txt").write_text("a task")
    assert registry.folder_family(encoder).name == "dialogue"
