"""The verdict cache: each distinct input judged once, with output byte-identical to no cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guardcli.core.verdict_cache import VerdictCache
from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.families.cached import classify_cached
from guardcli.families.loader import load_guard

from .hf_seqcls.conftest import hf_models  # noqa: F401 - the fixture, used below

TEXTS = ["a lighthouse at dusk", "how do I bake bread?", "a lighthouse at dusk", "x" * 40]
TURNS = [
    [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"}],
    [{"role": "user", "content": "the weather today"}],
]


def _records(texts: list[str]) -> list[Record]:
    return [Record(id=f"r{i}", text=t, line=i + 1, kept={"n": i}) for i, t in enumerate(texts)]


def _lines(verdicts) -> list[str]:
    return [json.dumps(v.to_dict(), sort_keys=True) for v in verdicts]


def _judged(guard) -> list[int]:
    """Wrap classify_records to record how many records reach the model per call."""
    sizes: list[int] = []
    plain = guard.classify_records

    def counted(records, on_batch=None):
        sizes.append(len(records))
        return plain(records, on_batch)

    guard.classify_records = counted
    return sizes


def _check_family(guard, records: list[Record], distinct: int) -> None:
    plain = _lines(guard.classify_records(records))
    sizes = _judged(guard)
    cache = VerdictCache()
    first = classify_cached(guard, records, cache)
    again = classify_cached(guard, records, cache)
    assert _lines(first) == plain and _lines(again) == plain
    assert sizes == [distinct]  # the second pass is all hits
    assert cache.stats().hits == 2 * len(records) - distinct


@pytest.mark.slow
def test_csam_guard_cached_equals_uncached(tiny_model: Path):
    guard = load_guard(tiny_model, variant="int8")
    _check_family(guard, _records(TEXTS * 3), distinct=3)


@pytest.mark.slow
def test_dialogue_cached_equals_uncached(intent_model: Path):
    guard = load_guard(intent_model, variant="fp32")
    records = [Record(id=i, messages=TURNS[i % 2], line=i) for i in range(5)]
    _check_family(guard, records, distinct=2)


@pytest.mark.slow  # ~15 s: a torch LoRA model
def test_opencc_cached_equals_uncached(opencc_cm: Path):
    guard = load_guard(opencc_cm)
    _check_family(guard, _records(TEXTS), distinct=3)


def test_hf_seqcls_cached_equals_uncached(hf_models):  # noqa: F811
    guard = load_guard(hf_models("roberta"), variant="fp32")
    _check_family(guard, _records(TEXTS), distinct=3)


@pytest.mark.slow
def test_qwen3guard_gen_score_mode_cached_equals_uncached():
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    guard = load_guard(cached_tiny_qwen3guard(), backend="onnxruntime", generate=False)
    records = [*_records(TEXTS[:3]), Record(id="m", messages=TURNS[0])]
    _check_family(guard, records, distinct=3)


@pytest.mark.slow
def test_options_variants_and_modes_never_share_an_entry(tiny_model: Path):
    cache = VerdictCache()
    records = _records(TEXTS[:2])
    guards = [
        load_guard(tiny_model, variant="int8"),
        load_guard(tiny_model, variant="fp32"),
        load_guard(tiny_model, variant="fp32", threshold=0.01),
        load_guard(tiny_model, variant="fp32", max_length=4),
    ]
    for guard in guards:
        classify_cached(guard, records, cache)
    assert cache.stats().hits == 0 and len(cache) == 2 * len(guards)
    low = classify_cached(guards[2], records, cache)
    assert cache.stats().hits == 2 and all(v.threshold == 0.01 for v in low)


@pytest.mark.slow
def test_a_mode_switch_changes_the_key():
    from guardcli.families.qwen3guard_gen.synthetic import cached_tiny_qwen3guard

    guard = load_guard(cached_tiny_qwen3guard(), backend="onnxruntime")
    cache = VerdictCache()
    guard.use_mode("score")
    classify_cached(guard, _records(["hello"]), cache)
    guard.use_mode("generate")
    classify_cached(guard, _records(["hello"]), cache)
    assert cache.stats().hits == 0 and len(cache) == 2


@pytest.mark.slow
def test_errors_are_never_cached_and_keep_their_own_line(tiny_model: Path):
    guard = load_guard(tiny_model, variant="fp32")
    bad = RecordError("invalid_json", "not JSON", 2)
    records = [
        Record(id=1, line=1),
        Record(id=2, line=2, error=bad),
        Record(id=3, line=3),
        Record(id=4, text="fine", line=4),
    ]
    cache = VerdictCache()
    out = classify_cached(guard, records, cache)
    assert _lines(out) == _lines(guard.classify_records(records))
    assert [v.error.line if v.error else None for v in out] == [1, 2, 3, None]
    assert len(cache) == 1


def test_model_errors_of_a_duplicate_are_judged_again(tiny_model: Path):
    """A first occurrence that fails (e.g. unparsable model output) is not copied: each
    duplicate is judged on its own and keeps its own line."""
    guard = load_guard(tiny_model, variant="fp32")
    calls: list[list[int]] = []

    def failing(records, on_batch=None):
        calls.append([r.line for r in records])
        return [Verdict.failed(r, RecordError("model_output", "bad", r.line)) for r in records]

    guard.classify_records = failing
    out = classify_cached(guard, _records(["same", "same"]), VerdictCache())
    assert calls == [[1], [2]] and [v.error.line for v in out] == [1, 2]


@pytest.mark.slow
def test_the_lru_keeps_within_its_memory_cap(tiny_model: Path):
    guard = load_guard(tiny_model, variant="fp32")
    cache = VerdictCache(max_bytes=2000)
    classify_cached(guard, _records([f"text {i}" for i in range(20)]), cache)
    stats = cache.stats()
    assert 0 < stats.entries < 20 and stats.bytes <= 2000
    # the newest entries stay
    classify_cached(guard, _records(["text 19"]), cache)
    assert cache.stats().hits == 1


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(picks=st.lists(st.integers(0, 4), min_size=1, max_size=12), split=st.integers(1, 6))
def test_any_sequence_with_repeats_gives_the_uncached_output(tiny_model: Path, picks, split):
    pool = ["a", "b b", "", "a lighthouse", "a"]
    guard = _guard(tiny_model)
    records = _records([pool[p] for p in picks])
    expected = _lines(guard.classify_records(records))
    cache = VerdictCache(max_bytes=3000)
    got = []
    for start in range(0, len(records), split):  # chunks, as a stream arrives
        got += classify_cached(guard, records[start : start + split], cache)
    assert _lines(got) == expected


_GUARDS: dict[Path, object] = {}


def _guard(path: Path):
    if path not in _GUARDS:
        _GUARDS[path] = load_guard(path, variant="int8")
    return _GUARDS[path]


@pytest.mark.parametrize("max_bytes", [None, 0])
def test_a_cache_that_holds_nothing_still_copies_duplicates(tiny_model: Path, max_bytes):
    guard = _guard(tiny_model)
    records = _records(["a", "a", "b"])
    out = classify_cached(guard, records, VerdictCache(max_bytes=max_bytes))
    assert _lines(out) == _lines(guard.classify_records(records))
