"""load_guard takes one GuardSpec as well as keyword options, with the same result."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from guardcli.api import GuardSpec, load_guard
from guardcli.core.errors import GuardError

TEXTS = ["a watercolor of a lighthouse at dusk", "hi", "a recipe for bread, please"]


@pytest.mark.slow
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
    with pytest.raises(
        GuardError, match=r"strict \(--strict\) does not apply to the seqcls family"
    ):
        load_guard(spec)


def test_a_spec_crosses_a_process_boundary_as_json(tmp_path: Path) -> None:
    # The bench workers receive their GuardSpec as one JSON line.
    import json

    spec = GuardSpec(
        model=str(tmp_path),
        variant="int8",
        backend="openvino",
        threshold=0.25,
        max_length=64,
        batch_size=4,
        threads=2,
        fail_closed=True,
        thresholds=tmp_path / "thresholds.json",
        dtype="float32",
        one_shot=True,
        options={"strict": False, "served_model": "judge"},
    )
    back = GuardSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert back == GuardSpec(**{**spec.__dict__, "thresholds": str(tmp_path / "thresholds.json")})
    assert GuardSpec.from_json(json.loads(json.dumps(GuardSpec().to_json()))) == GuardSpec()


def test_bench_builds_the_spec_its_load_options_meant(tiny_model: Path) -> None:
    from guardcli.jobs.bench.plan import guard_spec, load_options

    for variant, dtype in (("fp32", None), ("int8", "float32"), ("torch", "bfloat16")):
        spec = guard_spec(tiny_model, variant, dtype, max_length=48, threads=1)
        options = load_options(variant, dtype)
        assert spec == GuardSpec(
            model=str(tiny_model),
            variant=options["variant"],
            backend=options.get("backend"),
            dtype=options.get("dtype"),
            max_length=48,
            threads=1,
        )
    guard = load_guard(guard_spec(tiny_model, "fp32", max_length=48, threads=1))
    assert (guard.variant, guard.max_length, guard.threads) == ("fp32", 48, 1)
