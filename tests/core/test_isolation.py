"""The test session never reads or writes the user's home, and no test names a path outside the
repository (a test that only runs when a machine path exists passes silently everywhere else)."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from .. import model_store
from ..conftest import ROOT

TESTS = Path(__file__).parents[1]


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def test_guard_caches_and_config_live_in_the_session_tmp(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from guardcli.core.cache import hub_cache_dir
    from guardcli.core.catalog import user_catalog_path
    from guardcli.core.paths import cache_dir
    from guardcli.core.variants import measurement_path

    root = tmp_path_factory.getbasetemp()
    for path in (cache_dir(), user_catalog_path(), hub_cache_dir(), measurement_path()):
        assert _inside(path, root), path
    assert os.environ["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in os.environ


def test_the_users_guard_settings_do_not_leak_in() -> None:
    """The session drops every GUARD_* variable it inherits, then sets only its own."""
    assert sorted(n for n in os.environ if n.startswith("GUARD_")) == [
        "GUARD_BENCH_LIMITS",
        "GUARD_CACHE",
        "GUARD_PROBE_RESULT",
    ]


def test_the_model_store_key_covers_lazy_imports_the_template_and_the_recipe() -> None:
    closure = model_store.import_closure("guardcli.families.qwen3guard_gen.synthetic")
    # Imported inside functions only: a static scan must still find them.
    assert {"guardcli.runtime.causal_onnx", "guardcli.runtime.qwen_tokenizer"} <= set(closure)
    assert {"guardcli.families.qwen3guard_gen.format", "guardcli.core.paths"} <= set(closure)
    assert "qwen3guard_gen.jinja" in [p.name for p in model_store.data_files()]
    key = model_store.store_key("guardcli.families.seqcls.synthetic", "a")
    assert key == model_store.store_key("guardcli.families.seqcls.synthetic", "a")
    assert key != model_store.store_key("guardcli.families.seqcls.synthetic", "b")
    assert key != model_store.store_key("guardcli.families.dialogue.synthetic", "a")
    assert _inside(model_store.STORE, ROOT / ".cache")


def test_a_stored_model_is_built_once_and_copied(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(model_store, "STORE", tmp_path / "store")
    builds = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / ".cache").mkdir(parents=True)
        (out / "model.onnx").write_text("weights")
        (out / ".cache" / "optimized.onnx").write_text("beside")

    first = model_store.cached_build("m", "guardcli.core.paths", "r", build, tmp_path / "a")
    first.joinpath("model.onnx").write_text("a test changed its copy")
    second = model_store.cached_build("m", "guardcli.core.paths", "r", build, tmp_path / "b")
    assert len(builds) == 1 and second.joinpath("model.onnx").read_text() == "weights"
    assert sorted(p.name for p in second.iterdir()) == ["model.onnx"]
    model_store.cached_build("m", "guardcli.core.paths", "other", build, tmp_path / "c")
    assert len(builds) == 2


OUTSIDE_ROOTS = {"work", "home", "root", "tmp", "opt", "mnt", "data", "srv", "Users", "var"}


def _outside_paths(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith("/") and text.split("/")[1] in OUTSIDE_ROOTS and " " not in text:
                found.append(text)
        elif isinstance(node, ast.Attribute) and node.attr == "home":
            if isinstance(node.value, ast.Name) and node.value.id == "Path":
                found.append("Path.home()")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "expanduser":
            found.append("expanduser()")
    return found


def test_the_scan_finds_a_machine_path() -> None:
    assert _outside_paths('spec = Path("/work/shared/specs/t.jinja")') == [
        "/work/shared/specs/t.jinja"
    ]
    assert _outside_paths("home = Path.home() / '.cache'") == ["Path.home()"]
    assert _outside_paths('route = "/v1/chat/completions"') == []


def test_no_test_names_a_path_outside_the_repository() -> None:
    """Fixtures a test compares with are copied into tests/fixtures/ instead."""
    this = Path(__file__).name
    offenders = {
        path.name: found
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != this and (found := _outside_paths(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
