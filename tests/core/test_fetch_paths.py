"""`guard fetch` writes only inside the cache: --revision names a ref, links in a --from folder
stay inside it, a folder keeps its synthetic marker and is filed under its own family."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from guardcli.core.synthetic import SYNTHETIC_MARKER

from ..conftest import invoke
from ..core.test_fetch import REPO, _online
from ..hub_server import HubStub

INT8 = ["config.json", "onnx/model_quantized.onnx", "tokenizer.json", "tokenizer_config.json"]
STORAGE = "models--urtho--Qwen3-CSAM-Guard-0.6b-v1"


def _copy(model: Path, dst: Path, files: list[str]) -> Path:
    for rel in files:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model / rel, dst / rel)
    return dst


def _tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (links as their target text), to prove nothing changed."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): (
            str(p.readlink()).encode() if p.is_symlink() else p.read_bytes()
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


BAD_REVISIONS = ["../../x", "../outside", "a/../../b", "", " ", ".", "a//b", "main/.."]


@pytest.mark.parametrize("revision", BAD_REVISIONS)
def test_from_dir_revision_stays_in_the_cache(
    runner, tiny_model, tmp_path, monkeypatch, revision: str
) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # what the base commit overwrote: refs/../../x is <cache>/x
    (cache / "x").parent.mkdir(parents=True)
    (cache / "x").write_text("keep me")
    (tmp_path / "outside").write_text("keep me too")
    before = _tree(tmp_path)
    args = ["fetch", "csam-guard", "--variant", "int8", "--from", str(tiny_model)]
    result = invoke(runner, [*args, "--revision", revision])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"Error: --revision {revision!r} is not a branch, tag or")
    assert result.stdout == ""
    assert (cache / "x").read_text() == "keep me"
    assert not (cache / STORAGE).exists()  # nothing written at all
    assert _tree(tmp_path) == before


def test_from_dir_absolute_revision_overwrites_nothing(runner, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    victim = tmp_path / "important.txt"
    victim.write_text("precious")
    args = ["fetch", "csam-guard", "--variant", "int8", "--from", str(tiny_model)]
    result = invoke(runner, [*args, "--revision", str(victim)])
    assert result.exit_code == 2, result.stderr
    assert "--revision" in result.stderr
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("revision", ["../../x", "/etc/x", ""])
def test_download_revision_is_checked_before_any_request(
    runner, tiny_model, tmp_path, monkeypatch, revision: str
) -> None:
    with HubStub(REPO, tiny_model) as stub:
        _online(monkeypatch, stub.url, tmp_path / "hub")
        result = invoke(
            runner, ["fetch", "csam-guard", "--variant", "int8", "--revision", revision]
        )
        assert result.exit_code == 2, result.stderr
        assert "--revision" in result.stderr
        assert stub.requests == []
    assert _tree(tmp_path) == {}


def test_good_revision_names_still_work(runner, tiny_model, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    args = ["fetch", "csam-guard", "--variant", "int8", "--from", str(tiny_model), "-q"]
    result = invoke(runner, [*args, "--revision", "release/v1.0"])
    assert result.exit_code == 0, result.stderr
    ref = cache / STORAGE / "refs" / "release" / "v1.0"
    assert ref.read_text() == Path(result.stdout.strip()).name


def test_link_out_of_the_folder_is_refused(runner, tiny_model, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    secret = tmp_path / "secret.json"
    secret.write_text('{"not": "a model file"}')
    folder = _copy(tiny_model, tmp_path / "copy", [f for f in INT8 if f != "config.json"])
    (folder / "config.json").symlink_to(secret)
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--from", str(folder)])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(
        f"Error: {folder / 'config.json'} is a link to {secret.resolve()}, outside {folder}"
    )
    assert "cp -rL" in result.stderr
    blobs = [p.read_bytes() for p in cache.rglob("*") if p.is_file()]
    assert secret.read_bytes() not in blobs


def test_dangling_link_is_an_input_error(runner, tiny_model, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = _copy(tiny_model, tmp_path / "copy", [f for f in INT8 if f != "config.json"])
    (folder / "config.json").symlink_to(tmp_path / "gone.json")
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--from", str(folder)])
    assert result.exit_code == 2, result.stderr
    link, target = folder / "config.json", tmp_path / "gone.json"
    assert result.stderr.startswith(f"Error: {link} is a dangling link (it points to {target})")


def test_link_inside_the_folder_is_fine(runner, tiny_model, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = _copy(tiny_model, tmp_path / "copy", [f for f in INT8 if f != "config.json"])
    shutil.copyfile(tiny_model / "config.json", folder / "real-config.json")
    (folder / "config.json").symlink_to("real-config.json")
    args = ["fetch", "csam-guard", "--variant", "int8", "--from", str(folder), "-q"]
    result = invoke(runner, args)
    assert result.exit_code == 0, result.stderr
    snapshot = Path(result.stdout.strip())
    assert (snapshot / "config.json").read_bytes() == (tiny_model / "config.json").read_bytes()


def test_from_dir_keeps_the_synthetic_marker(runner, tiny_model, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--from", str(tiny_model)])
    assert result.exit_code == 0, result.stderr
    snapshot = Path(result.stdout.strip())
    marker = snapshot / SYNTHETIC_MARKER
    assert json.loads(marker.read_text()) == json.loads((tiny_model / SYNTHETIC_MARKER).read_text())
    assert "is a synthetic model (random weights" in result.stderr

    # a real folder imported over it drops the mark: the snapshot is no longer synthetic
    real = _copy(tiny_model, tmp_path / "real", INT8)
    again = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--from", str(real)])
    assert again.exit_code == 0, again.stderr
    assert Path(again.stdout.strip()) == snapshot
    assert not marker.exists()
    assert "synthetic" not in again.stderr


def test_from_dir_of_another_family_is_refused(runner, tiny_model, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    opencc = _copy(tiny_model, tmp_path / "opencc", INT8)
    (opencc / "weight_frame.json").write_text("{}")
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--from", str(opencc)])
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(
        f"Error: {opencc} looks like a model folder of the opencc family, but 'csam-guard' is "
        "of the seqcls family."
    )
    # and the other way round: a sequence classifier is not a Qwen3Guard-Gen checkpoint
    result = invoke(runner, ["fetch", "qwen3guard-gen", "--from", str(tiny_model)])
    assert result.exit_code == 2, result.stderr
    assert "of the seqcls family, but 'qwen3guard-gen' is of the qwen3guard-gen family" in (
        result.stderr
    )
    assert _tree(cache) == {}


@pytest.mark.parametrize("dangling", [False, True])
def test_any_link_out_of_the_folder_is_refused(
    runner, tiny_model, tmp_path, monkeypatch, dangling: bool
) -> None:
    """Links the import would not copy, and links to folders, are refused too."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = _copy(tiny_model, tmp_path / "copy", [f for f in INT8 if not f.startswith("onnx/")])
    elsewhere = tmp_path / "elsewhere" / "onnx"
    if not dangling:
        _copy(tiny_model, tmp_path / "elsewhere", ["onnx/model_quantized.onnx"])
    (folder / "onnx").symlink_to(elsewhere, target_is_directory=True)
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--from", str(folder)])
    assert result.exit_code == 2, result.stderr
    what = "is a dangling link" if dangling else f"is a link to {elsewhere.resolve()}, outside"
    assert result.stderr.startswith(f"Error: {folder / 'onnx'} {what}")
    assert _tree(tmp_path / "hub") == {}
