"""`guard serve`'s OpenAI moderations answer names the OpenAI categories a family's own
categories correspond to (a toxicity model's `threat` is `harassment/threatening`), next to the
family's own; every family's mapping names real categories on both sides."""

from __future__ import annotations

import pytest

from guardcli import load_guard
from guardcli.core import registry
from guardcli.core.registry import OPENAI_CATEGORIES

httpx = pytest.importorskip("httpx")

from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app  # noqa: E402

TEXTS = ["a calm note about tea", "another line of neutral text", "the weather is mild"]


def test_moderations_add_the_openai_categories(hf_multilabel) -> None:
    guard = load_guard(hf_multilabel, variant="fp32", threshold=0.3)
    expected = guard.classify(TEXTS)
    app = create_app(guard, ServeOptions(max_batch=8, max_wait_ms=5))
    with BackgroundServer(app) as url:
        answer = httpx.post(f"{url}/v1/moderations", json={"input": TEXTS}, timeout=60).json()
    mapping = registry.get("hf-seqcls").openai_categories
    for verdict, result in zip(expected, answer["results"], strict=True):
        own = verdict.categories
        assert isinstance(own, dict)
        for name, value in own.items():  # the family's own categories are kept as they were
            assert result["categories"][name] == value["flagged"]
            assert result["category_scores"][name] == pytest.approx(value["score"], abs=1e-6)
        for target in {t for ts in mapping.values() for t in ts}:
            sources = [n for n in own if target in mapping.get(n, ())]
            if not sources:  # the tiny model has six of Detoxify's labels
                assert target not in result["categories"]
                continue
            assert result["categories"][target] == any(own[n]["flagged"] for n in sources)
            assert result["category_scores"][target] == pytest.approx(
                max(own[n]["score"] for n in sources), abs=1e-6
            )


def _family_categories() -> dict[str, set[str]]:
    from guardcli.families.hf_seqcls.guard import CATALOG_UNSAFE_LABELS
    from guardcli.families.opencc.frame import TAXONOMY
    from guardcli.families.qwen3guard_gen.format import CATEGORIES
    from guardcli.families.qwen3guard_stream.labels import QUERY_CATEGORIES

    detoxify = set(CATALOG_UNSAFE_LABELS["unbiased-toxic-roberta"])
    return {
        "opencc": set(TAXONOMY),
        "qwen3guard-gen": set(CATEGORIES),
        "qwen3guard-stream": set(QUERY_CATEGORIES.values()),
        "hf-seqcls": detoxify,
    }


@pytest.mark.parametrize("family", sorted(_family_categories()))
def test_each_mapping_names_real_categories(family: str) -> None:
    mapping = registry.get(family).openai_categories
    assert mapping, family
    assert set(mapping) <= _family_categories()[family]
    assert {t for ts in mapping.values() for t in ts} <= set(OPENAI_CATEGORIES)
