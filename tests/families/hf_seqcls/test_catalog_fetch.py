"""Catalog entries of hf-seqcls end to end: a gated repo's message, an air-gapped import, and
classify by catalog name (with the entry's unsafe labels and threshold)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ...conftest import invoke
from ...core.test_fetch import _online
from ...hub_server import HubStub

runner = CliRunner()
REPO = "meta-llama/Llama-Prompt-Guard-2-86M"


def test_gated_prompt_guard_says_how_to_get_access(hf_models, monkeypatch, tmp_path):
    with HubStub(REPO, hf_models("deberta-v2")) as hub:
        _online(monkeypatch, hub.url, tmp_path / "hub")
        hub.gated_token = "hf_granted"
        result = invoke(runner, ["fetch", "llama-prompt-guard-2-86m", "--variant", "fp32"])
        assert result.exit_code == 3
        assert result.stdout == ""
        assert f"Error: Access to {REPO} was refused (401): the repository is gated." in (
            result.stderr
        )
        assert f"Accept its conditions on the model page, {hub.url}/{REPO}" in result.stderr


def test_import_and_classify_by_catalog_name(hf_models, monkeypatch, tmp_path: Path):
    from guardcli import load_guard

    folder = hf_models("deberta-v2")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    name = "llama-prompt-guard-2-86m"
    fetched = invoke(runner, ["fetch", name, "--variant", "fp32", "--from", str(folder)])
    assert fetched.exit_code == 0, fetched.stderr
    guard = load_guard(name, variant="fp32")
    assert (guard.family, guard.threshold, guard.max_length) == ("hf-seqcls", 0.9, 512)
    assert [guard.labels.names[i] for i in guard.labels.unsafe] == ["MALICIOUS"]
    expected = load_guard(folder, variant="fp32").classify(["hello world"])[0].score
    result = invoke(
        runner, ["classify", "-m", name, "--variant", "fp32", "-f", "jsonl", "-q", "hello world"]
    )
    row = json.loads(result.stdout)
    assert row["model"] == name and row["threshold"] == 0.9
    assert row["score"] == pytest.approx(expected, abs=1e-5)
    assert result.exit_code == (1 if expected >= 0.9 else 0)
