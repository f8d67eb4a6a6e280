"""docs/add-a-family.md, followed to the letter: a toy family registered through the
`guardcli.families` entry point group is found, built with `guard synth` and run by
`guard classify -m DIR` and load_guard, without touching guardcli's own code."""

from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest

from guardcli.core import registry

from ..conftest import invoke

DOC = Path(__file__).resolve().parents[2] / "docs" / "add-a-family.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


@pytest.fixture
def toy_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The page's package and its installed entry point: a .dist-info on sys.path."""
    site = tmp_path / "site"
    package = site / "toy_guard_family"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(_blocks("python")[0], encoding="utf-8")
    dist = site / "toy_guard_family-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-guard-family\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(_blocks("ini")[0], encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    registry.refresh()
    yield tmp_path
    sys.modules.pop("toy_guard_family", None)
    registry.refresh()


def test_the_entry_point_registers_the_family(toy_family: Path) -> None:
    assert "toy" in registry.names()
    family = registry.get("toy")
    assert family.marker == "toy_family.json"
    # the built-in families are still there, found by scanning guardcli.families
    assert {"seqcls", "dialogue", "opencc", "qwen3guard-gen"} <= set(registry.names())
    assert "toy" in registry.synth_builders()


def test_without_the_entry_point_there_is_no_toy_family() -> None:
    registry.refresh()
    assert "toy" not in registry.names()


def test_synth_and_classify_run_the_toy_family(runner, toy_family: Path) -> None:
    out = toy_family / "toy-model"
    built = invoke(runner, ["synth", "toy", "--out", str(out)])
    assert built.exit_code == 0, built.stderr
    assert built.stdout.strip() == str(out)
    assert "wrote toy (tiny, a keyword, no weights)" in built.stderr
    assert registry.folder_family(out).name == "toy"

    flagged = invoke(runner, ["classify", "-m", str(out), "a zorblax in the garden"])
    assert flagged.exit_code == 1, flagged.stderr
    verdict = json.loads(flagged.stdout)
    assert (verdict["flagged"], verdict["score"], verdict["label"]) == (True, 1.0, "unsafe")
    assert (verdict["model"], verdict["variant"]) == ("toy-model", "python")

    allowed = invoke(runner, ["classify", "-m", str(out), "a lighthouse at dusk"])
    assert allowed.exit_code == 0, allowed.stderr
    assert json.loads(allowed.stdout)["flagged"] is False


def test_load_guard_runs_the_toy_family(toy_family: Path) -> None:
    from guardcli import load_guard

    out = toy_family / "toy-model"
    registry.load(registry.get("toy").synth["toy"])(
        out, name="toy", size="tiny", seed=0, log=lambda _: None
    )
    guard = load_guard(out)
    verdicts = guard.classify(["zorblax", "a teapot", "x" * 100 + "zorblax"])
    # the third text is cut at the family's max_length (64), so its keyword is never seen
    assert [v.flagged for v in verdicts] == [True, False, False]
    assert verdicts[2].truncated is True
