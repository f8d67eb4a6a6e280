"""`guard models`: the catalog, the user's models.toml, and cache status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ..conftest import invoke


def _listing(runner) -> dict[str, dict]:
    result = invoke(runner, ["models", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    return {m["name"]: m for m in json.loads(result.stdout)}


@pytest.fixture(autouse=True)
def _no_user_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GUARD_MODELS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))


def test_builtin_catalog(runner) -> None:
    models = _listing(runner)
    assert sorted(models) == [
        "csam-guard",
        "deberta-v3-prompt-injection-v2",
        "granite-guardian-hap-125m",
        "granite-guardian-hap-38m",
        "llama-guard-3-1b",
        "llama-guard-3-8b",
        "llama-prompt-guard-2-22m",
        "llama-prompt-guard-2-86m",
        "opencc-cm",
        "opencc-jb",
        "qwen3guard-gen",
        "qwen3guard-gen-4b",
        "qwen3guard-gen-8b",
        "qwen3guard-stream",
        "qwen3guard-stream-4b",
        "qwen3guard-stream-8b",
        "unbiased-toxic-roberta",
    ]
    csam = models["csam-guard"]
    assert (csam["repo"], csam["family"], csam["threshold"], csam["max_length"]) == (
        "urtho/Qwen3-CSAM-Guard-0.6b-v1",
        "seqcls",
        0.5,
        384,
    )
    assert csam["variants"]["int8"] == {"files": ["onnx/model_quantized.onnx"], "cached": False}
    assert "tokenizer.json" in csam["common_files"]
    gen = models["qwen3guard-gen-4b"]
    assert (gen["repo"], gen["family"], gen["max_length"]) == (
        "Qwen/Qwen3Guard-Gen-4B",
        "qwen3guard-gen",
        32768,
    )
    assert list(gen["variants"]) == ["bf16"]
    assert models["qwen3guard-gen"]["repo"] == "Qwen/Qwen3Guard-Gen-0.6B"
    cm, jb = models["opencc-cm"], models["opencc-jb"]
    assert cm["repo"] == "centrepourlasecuriteia/opencc-cm-escalation"
    assert jb["repo"] == "centrepourlasecuriteia/opencc-jb-escalation"
    assert (cm["threshold"], jb["threshold"]) == (None, 0.34)
    assert "weight_frame.json" in cm["common_files"] and "*.pt" in cm["common_files"]


def test_table(runner) -> None:
    result = invoke(runner, ["models", "--format", "table"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "csam-guard  (seqcls)  urtho/Qwen3-CSAM-Guard-0.6b-v1  threshold 0.5  max length 384"
    )
    assert "  int8  not cached  onnx/model_quantized.onnx" in lines
    assert any(line.startswith("opencc-cm  (opencc)") and "per-category" in line for line in lines)


def test_cached_variant_shows(runner, tiny_model: Path) -> None:
    imported = invoke(
        runner, ["fetch", "csam-guard", "--variant", "fp16", "--from", str(tiny_model)]
    )
    assert imported.exit_code == 0, imported.stderr
    csam = _listing(runner)["csam-guard"]
    assert [v for v, i in csam["variants"].items() if i["cached"]] == ["fp16"]
    assert csam["snapshot"] == imported.stdout.strip()
    table = invoke(runner, ["models", "-f", "table"]).stdout.splitlines()
    assert "  fp16  cached      onnx/model_fp16.onnx" in table


USER_FILE = """
[models.acme-guard]
repo = "acme/acme-guard-onnx"
threshold = 0.7
max_length = 512
description = "our fine-tune"
variants = { fp32 = "onnx/model.onnx", int8 = ["onnx/model_int8.onnx"] }

[models.csam-guard]
threshold = 0.984
"""


def test_user_file_adds_and_overrides(runner, monkeypatch, tmp_path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(USER_FILE)
    monkeypatch.setenv("GUARD_MODELS", str(path))
    models = _listing(runner)
    acme = models["acme-guard"]
    assert (acme["repo"], acme["family"], acme["threshold"], acme["max_length"]) == (
        "acme/acme-guard-onnx",
        "seqcls",
        0.7,
        512,
    )
    assert acme["variants"]["int8"]["files"] == ["onnx/model_int8.onnx"]
    assert acme["source"] == str(path)
    assert models["csam-guard"]["threshold"] == 0.984
    assert models["csam-guard"]["repo"] == "urtho/Qwen3-CSAM-Guard-0.6b-v1"  # kept
    # a user model resolves like a built-in one: missing from the cache -> exit 3 with the fix
    result = invoke(runner, ["classify", "--model", "acme-guard", "--variant", "int8", "x"])
    assert result.exit_code == 3
    assert "Run `guard fetch acme-guard --variant int8`" in result.stderr


def test_default_user_file_location(runner, tmp_path) -> None:
    folder = tmp_path / "config" / "guardcli"
    folder.mkdir(parents=True)
    (folder / "models.toml").write_text('[models.mine]\nrepo = "me/mine"\n')
    assert _listing(runner)["mine"]["repo"] == "me/mine"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[models.x\n", "is not valid TOML"),
        ("[models.x]\nthreshold = 0.5\n", "[models.x] needs repo = 'org/name'."),
        ('[models.x]\nrepo = "a/b"\ncolour = 1\n', "[models.x] has unknown key(s): colour."),
        (
            '[models.x]\nrepo = "a/b"\nthreshold = "high"\n',
            "[models.x] threshold must be a number.",
        ),
    ],
)
def test_bad_user_file(runner, monkeypatch, tmp_path, text, message) -> None:
    path = tmp_path / "models.toml"
    path.write_text(text)
    monkeypatch.setenv("GUARD_MODELS", str(path))
    result = invoke(runner, ["models", "-f", "json"])
    assert result.exit_code == 2
    assert message in result.stderr


def test_missing_user_file_named_by_env(runner, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GUARD_MODELS", str(tmp_path / "nope.toml"))
    result = invoke(runner, ["models"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"Error: GUARD_MODELS points to {tmp_path / 'nope.toml'}, which does not exist.\n"
    )


def test_without_a_toml_parser(runner, monkeypatch, tmp_path) -> None:
    path = tmp_path / "models.toml"
    path.write_text(USER_FILE)
    monkeypatch.setenv("GUARD_MODELS", str(path))
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    result = invoke(runner, ["models"])
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: Reading {path} needs Python 3.11+ or the 'tomli' package.\n"
        "Install it with: pip install tomli (or unset GUARD_MODELS).\n"
    )


def test_torch_families_resolve_from_the_cache_once_fetched(runner, tmp_path) -> None:
    result = invoke(runner, ["classify", "--model", "opencc-cm", "x"])
    assert result.exit_code == 3
    assert "Model 'opencc-cm' is not in the cache." in result.stderr
    # qwen3guard-gen runs (torch, ONNX or --endpoint) once fetched.
    result = invoke(runner, ["classify", "--model", "qwen3guard-gen", "x"])
    assert result.exit_code == 3
    assert "Model 'qwen3guard-gen' is not in the cache." in result.stderr
