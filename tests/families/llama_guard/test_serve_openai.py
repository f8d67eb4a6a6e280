"""`guard serve`'s OpenAI moderations answer for Llama Guard: the S-codes' names as the model's
verdicts give them, plus the OpenAI categories they correspond to (Violent Crimes is
`violence`); the mapping names categories the templates list and OpenAI's own names."""

from __future__ import annotations

from pathlib import Path

import pytest

from guardcli import load_guard
from guardcli.core import registry
from guardcli.core.registry import OPENAI_CATEGORIES
from guardcli.families.llama_guard import format as fmt
from guardcli.families.llama_guard.synth import MARKER_WORD

httpx = pytest.importorskip("httpx")

from guardcli.jobs.serve import BackgroundServer, ServeOptions, create_app  # noqa: E402

# The tiny model answers "unsafe\nS1" about its marker word, "safe" otherwise.
TEXTS = [f"a {MARKER_WORD} lighthouse please", "How do I bake bread?"]


def test_moderations_add_the_openai_categories(lg_tiny: Path) -> None:
    guard = load_guard(lg_tiny, variant="fp32")
    expected = guard.classify(TEXTS)
    assert [v.categories for v in expected] == [["Violent Crimes"], []]
    app = create_app(guard, ServeOptions(max_batch=8, max_wait_ms=5))
    with BackgroundServer(app) as url:
        answer = httpx.post(f"{url}/v1/moderations", json={"input": TEXTS}, timeout=60).json()
    flagged, safe = answer["results"]
    assert flagged["flagged"] is True and safe["flagged"] is False
    # The model's own category is kept, and its OpenAI counterpart added with the same score.
    assert flagged["categories"] == {"Violent Crimes": True, "violence": True}
    scores = flagged["category_scores"]
    assert scores["violence"] == pytest.approx(scores["Violent Crimes"], abs=1e-9)
    assert scores["violence"] == pytest.approx(expected[0].score, abs=1e-6)
    assert not any(safe["categories"].get(name) for name in OPENAI_CATEGORIES)


@pytest.mark.parametrize("layout", sorted(fmt.TEMPLATES))
def test_mapping_names_real_categories(layout: str) -> None:
    mapping = registry.get("llama-guard").openai_categories
    own = {c.code: c.name for c in fmt.template_taxonomy(fmt.packaged_template(layout))}
    assert set(mapping) <= set(own.values())
    assert {t for ts in mapping.values() for t in ts} <= set(OPENAI_CATEGORIES)
    # S1-S4 and S9-S12 correspond to an OpenAI category; the rest (S5-S8, S13, S14) to none.
    mapped = {code for code, name in own.items() if name in mapping}
    assert mapped == {"S1", "S2", "S3", "S4", "S9", "S10", "S11", "S12"}
