"""load_guard takes one GuardSpec as well as keyword options, with the same result."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from guardcli.api import GuardSpec, load_guard
from guardcli.core.errors import GuardError

TEXTS = ["a watercolor of a lighthouse at dusk", "hi", "a recipe for bread, please"]


def test_a_spec_loads_the_guard_its_keywords_load(tiny_model: Path) -> None:
    spec = GuardSpec(model=str(tiny_model), variant="fp32", threshold=0.3, max_length=32)
    by_spec = load_guard(spec)
    by_keywords = load_guard(tiny_model, variant="fp32", threshold=0.3, max_length=32)
    assert (by_spec.variant, by_spec.threshold, by_spec.max_length) == ("fp32", 0.3, 32)
    assert [v.score for v in by_spec.classify(TEXTS)] == [
        v.score for v in by_keywords.classify(TEXTS)
    ]
    # what a Ray actor receives travels intact
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_family_options_in_a_spec_are_checked_by_the_family(tiny_model: Path) -> None:
    spec = GuardSpec(model=str(tiny_model), variant="fp32", options={"strict": False})
    with pytest.raises(GuardError, match="strict does not apply to the seqcls family"):
        load_guard(spec)
