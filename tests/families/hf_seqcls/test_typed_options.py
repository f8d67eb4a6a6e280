"""A family's own options may be typed (its `options_type` dataclass) in a GuardSpec: they load
the guard their keywords load, and another family refuses them by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.api import GuardSpec, load_guard
from guardcli.core.errors import ExitCode, GuardError
from guardcli.families.hf_seqcls.options import HfSeqClsOptions
from guardcli.families.qwen3guard_gen.options import Qwen3GuardOptions

TEXTS = ["a watercolor of a lighthouse at dusk " * 30, "hi"]


def test_typed_options_load_the_guard_their_keywords_load(hf_models) -> None:
    folder = hf_models("bert")
    typed = HfSeqClsOptions(long="segments", overlap=8)
    by_type = load_guard(GuardSpec(model=str(folder), variant="fp32", options=typed))
    by_keywords = load_guard(folder, variant="fp32", long="segments", overlap=8)
    assert (by_type.long, by_type.overlap) == ("segments", 8)
    assert [v.score for v in by_type.classify(TEXTS)] == [
        v.score for v in by_keywords.classify(TEXTS)
    ]
    # through JSON (the bench workers) typed options arrive as a mapping of their fields
    spec = GuardSpec(model=str(folder), variant="fp32", options=typed)
    back = GuardSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert back.options == {"long": "segments", "unsafe_labels": None, "overlap": 8}
    assert load_guard(back).long == "segments"


def test_the_family_checks_typed_options(hf_models) -> None:
    spec = GuardSpec(model=str(hf_models("bert")), variant="fp32", options=HfSeqClsOptions("x"))
    with pytest.raises(GuardError, match="--long 'x'"):
        load_guard(spec)


def test_another_familys_typed_options_are_refused_by_name(tiny_model: Path) -> None:
    spec = GuardSpec(model=str(tiny_model), variant="fp32", options=Qwen3GuardOptions(strict=False))
    with pytest.raises(GuardError, match="Qwen3GuardOptions does not apply to the seqcls") as err:
        load_guard(spec)
    assert err.value.code == ExitCode.INPUT
