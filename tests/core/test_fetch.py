"""`guard fetch` against a local stand-in for the hub, `--from DIR` imports, offline resolution."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..conftest import invoke
from ..hub_server import COMMIT, HubStub

REPO = "urtho/Qwen3-CSAM-Guard-0.6b-v1"
INT8_FILES = ["config.json", "onnx/model_quantized.onnx", "tokenizer.json", "tokenizer_config.json"]


def _online(monkeypatch: pytest.MonkeyPatch, endpoint: str, cache: Path) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    # huggingface_hub reads HF_HUB_OFFLINE once, at import time
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def hub(tiny_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    with HubStub(REPO, tiny_model) as stub:
        _online(monkeypatch, stub.url, tmp_path / "hub")
        yield stub


def _size(folder: Path, files: list[str]) -> int:
    return sum((folder / f).stat().st_size for f in files)


@pytest.mark.slow
def test_fetch_int8_moves_only_its_files(hub, runner, tiny_model, tmp_path, monkeypatch):
    assert "onnx/model_quantized.onnx_data" not in hub.files  # tiny graphs are self-contained
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8"])
    assert result.exit_code == 0, result.stderr
    assert hub.downloaded() == INT8_FILES
    assert "onnx/model.onnx" not in hub.downloaded()
    snapshot = tmp_path / "hub" / "models--urtho--Qwen3-CSAM-Guard-0.6b-v1" / "snapshots" / COMMIT
    assert result.stdout == f"{snapshot}\n"
    assert (snapshot.parent.parent / "refs" / "main").read_text() == COMMIT
    total = _size(tiny_model, INT8_FILES)
    assert f"csam-guard (int8): 4 files, {total / 1e6:.1f} MB, downloaded" in result.stderr
    assert f"into {snapshot}" in result.stderr

    # then every command finds it in the cache with no network call
    _offline(monkeypatch)
    seen = len(hub.requests)
    out = invoke(
        runner,
        [
            "classify",
            "--model",
            "csam-guard",
            "--variant",
            "int8",
            "-f",
            "jsonl",
            "a watercolor lighthouse",
        ],
    )
    assert out.exit_code in (0, 1), out.stderr
    verdict = json.loads(out.stdout)
    assert (verdict["model"], verdict["variant"]) == ("csam-guard", "int8")
    assert len(hub.requests) == seen

    # a variant that was not fetched says how to get it
    out = invoke(runner, ["classify", "--model", "csam-guard", "--variant", "fp32", "x"])
    assert out.exit_code == 3
    assert out.stderr == (
        "Error: Model 'csam-guard' (fp32) is not in the cache.\n"
        "Run `guard fetch csam-guard --variant fp32`, or pass --model DIR.\n"
    )


@pytest.mark.slow
def test_fetch_all_and_refetch_is_idempotent(hub, runner):
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "all", "--quiet"])
    assert result.exit_code == 0, result.stderr
    graphs = ["onnx/model.onnx", "onnx/model_fp16.onnx", "onnx/model_quantized.onnx"]
    assert hub.downloaded() == sorted([*INT8_FILES[:1], *graphs, *INT8_FILES[2:]])
    assert result.stderr == ""
    gets = len(hub.downloaded())
    again = invoke(runner, ["fetch", "csam-guard", "--variant", "fp16", "--quiet"])
    assert again.exit_code == 0, again.stderr
    assert len(hub.downloaded()) == gets  # already cached: nothing travels twice


@pytest.mark.slow
def test_fetch_revision_and_cache_dir(hub, runner, tmp_path):
    cache = tmp_path / "elsewhere"
    result = invoke(
        runner,
        [
            "fetch",
            "csam-guard",
            "--variant",
            "fp16",
            "--revision",
            COMMIT,
            "--cache-dir",
            str(cache),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(cache)
    assert any(f"/revision/{COMMIT}" in p or f"/tree/{COMMIT}" in p for _, p, _ in hub.requests)
    assert "onnx/model_quantized.onnx" not in hub.downloaded()


@pytest.mark.slow
def test_gated_repo_says_how_to_get_access(hub, runner, monkeypatch):
    hub.gated_token = "hf_granted"
    page = f"{hub.url}/{REPO}"
    hint = (
        f"Accept its conditions on the model page, {page}, while logged in; then run "
        "`hf auth login` or set HF_TOKEN to a token of that account, and retry.\n"
    )
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8"])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.endswith(
        f"Error: Access to {REPO} was refused (401): the repository is gated.\n{hint}"
    )

    monkeypatch.setenv("HF_TOKEN", "hf_not_accepted")
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8"])
    assert result.exit_code == 3
    assert f"Error: Access to {REPO} was refused (403): the repository is gated.\n" in result.stderr

    monkeypatch.setenv("HF_TOKEN", "hf_granted")
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "-q"])
    assert result.exit_code == 0, result.stderr
    assert hub.downloaded() == INT8_FILES
    assert hub.requests[-1][2] == "Bearer hf_granted"


@pytest.mark.slow
def test_offline_fetch_says_what_to_do(hub, runner, monkeypatch):
    _offline(monkeypatch)
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--quiet"])
    assert result.exit_code == 3
    assert result.stderr == (
        "Error: HF_HUB_OFFLINE is set, so 'csam-guard' cannot be downloaded.\n"
        f"Unset HF_HUB_OFFLINE to download from {hub.url}, or copy the model folder from a "
        "connected machine and run `guard fetch csam-guard --from DIR`.\n"
    )
    assert hub.requests == []


def test_unreachable_endpoint(runner, monkeypatch, tmp_path):
    _online(monkeypatch, "http://127.0.0.1:9", tmp_path / "hub")
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8"])
    assert result.exit_code == 3
    assert "Could not download urtho/Qwen3-CSAM-Guard-0.6b-v1 from http://127.0.0.1:9" in (
        result.stderr
    )
    assert "guard fetch csam-guard --from DIR" in result.stderr


@pytest.mark.slow
def test_from_dir_imports_for_air_gapped_hosts(runner, tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "--from", str(tiny_model)])
    assert result.exit_code == 0, result.stderr
    snapshot = Path(result.stdout.strip())
    storage = tmp_path / "hub" / "models--urtho--Qwen3-CSAM-Guard-0.6b-v1"
    assert snapshot.parent == storage / "snapshots"
    assert (storage / "refs" / "main").read_text() == snapshot.name
    files = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    assert files == sorted([*INT8_FILES, "guardcli_synthetic.json"])  # still marked synthetic
    assert (snapshot / "tokenizer.json").is_symlink()
    assert (snapshot / "tokenizer.json").resolve().parent == storage / "blobs"
    assert f"imported from {tiny_model}" in result.stderr

    out = invoke(runner, ["classify", "--model", "csam-guard", "-f", "jsonl", "hello"])
    assert out.exit_code in (0, 1), out.stderr
    assert json.loads(out.stdout)["variant"] == "int8"

    listing = json.loads(invoke(runner, ["models", "-f", "json"]).stdout)
    csam = next(m for m in listing if m["name"] == "csam-guard")
    assert {v: i["cached"] for v, i in csam["variants"].items()} == {
        "fp32": False,
        "fp16": False,
        "int8": True,
    }

    # a second import adds a variant to the same snapshot
    again = invoke(runner, ["fetch", "csam-guard", "--variant", "fp32", "--from", str(tiny_model)])
    assert again.exit_code == 0, again.stderr
    assert Path(again.stdout.strip()) == snapshot
    assert (snapshot / "onnx/model.onnx").exists() and (
        snapshot / "onnx/model_quantized.onnx"
    ).exists()


def test_from_dir_without_the_variant(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = tmp_path / "copy"
    (folder / "onnx").mkdir(parents=True)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "onnx" / "model_quantized.onnx").write_bytes(b"x")
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "fp16", "--from", str(folder)])
    assert result.exit_code == 3
    assert result.stderr.startswith(
        f"Error: {folder} has no fp16 variant of 'csam-guard' (found: int8).\n"
    )


def test_cache_location_follows_hf_env(monkeypatch, tmp_path):
    from guardcli.core.cache import hub_cache_dir

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hub_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "c"))
    assert hub_cache_dir() == tmp_path / "c"
    assert hub_cache_dir(str(tmp_path / "x")) == tmp_path / "x"


@pytest.mark.slow
def test_dropped_connection_resumes_with_a_range_request(hub, runner, monkeypatch):
    from huggingface_hub import constants

    # huggingface_hub resumes from the last whole chunk it wrote (10 MB by default)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 65_536)
    data = hub.files["onnx/model_quantized.onnx"]
    hub.cut["onnx/model_quantized.onnx"] = 100_000
    result = invoke(runner, ["fetch", "csam-guard", "--variant", "int8", "-q"])
    assert result.exit_code == 0, result.stderr
    assert hub.ranges == [("onnx/model_quantized.onnx", "bytes=65536-")]
    snapshot = Path(result.stdout.strip())
    assert (snapshot / "onnx/model_quantized.onnx").read_bytes() == data


@pytest.mark.slow
def test_fetch_a_safetensors_family(runner, tmp_path, monkeypatch):
    repo = tmp_path / "qwen3guard"
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "model.safetensors",
        "README.md",
        "LICENSE",
    ):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    with HubStub("Qwen/Qwen3Guard-Gen-0.6B", repo) as stub:
        _online(monkeypatch, stub.url, tmp_path / "hub")
        result = invoke(runner, ["fetch", "qwen3guard-gen", "-q"])  # auto: its only variant
        assert result.exit_code == 0, result.stderr
        assert stub.downloaded() == [
            "config.json",
            "generation_config.json",
            "merges.txt",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.json",
        ]
    listing = {m["name"]: m for m in json.loads(invoke(runner, ["models", "-f", "json"]).stdout)}
    assert listing["qwen3guard-gen"]["variants"]["bf16"]["cached"] is True
    assert listing["qwen3guard-gen-4b"]["variants"]["bf16"]["cached"] is False
