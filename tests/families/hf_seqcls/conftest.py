"""Tiny random-weight hf-seqcls checkpoints (one per architecture), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from ... import model_store

ARCHES = ("deberta-v2", "roberta", "xlm-roberta", "bert", "modernbert")


def _build(tmp: pytest.TempPathFactory, name: str, recipe: str, build) -> Path:
    builder = "guardcli.families.hf_seqcls.synth"
    return model_store.cached_build(name, builder, recipe, build, tmp.mktemp("models") / name)


@pytest.fixture(scope="session")
def hf_models(tmp_path_factory: pytest.TempPathFactory):
    """arch -> folder of a tiny binary classifier (checkpoint + onnx fp32/fp16/int8)."""
    from guardcli.families.hf_seqcls.synth import synth_hf_seqcls

    built: dict[str, Path] = {}

    def get(arch: str) -> Path:
        if arch not in built:
            built[arch] = _build(
                tmp_path_factory,
                f"hf-seqcls-{arch}-tiny",
                f"synth_hf_seqcls(arch={arch!r})",
                lambda out: synth_hf_seqcls(out, arch=arch),
            )
        return built[arch]

    return get


@pytest.fixture(scope="session")
def hf_multilabel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny multi-label (sigmoid, 6 toxicity labels) RoBERTa classifier, fp32 only."""
    from guardcli.families.hf_seqcls.synth import synth_hf_seqcls

    return _build(
        tmp_path_factory,
        "hf-seqcls-roberta-multilabel-tiny",
        "synth_hf_seqcls(arch='roberta', num_labels=6, multi_label=True, variants=('fp32',))",
        lambda out: synth_hf_seqcls(
            out, arch="roberta", num_labels=6, multi_label=True, variants=("fp32",)
        ),
    )
