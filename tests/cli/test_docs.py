"""Every command has help text and a README section; `guard --help` needs only the runtime."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from guardcli.cli import app

from ..conftest import ROOT, invoke

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands if c.callback)


def test_there_are_commands() -> None:
    assert "classify" in COMMANDS and "synth" in COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(runner, command: str) -> None:
    result = invoke(runner, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage: guard " + command in result.stdout
    callback = next(
        c.callback
        for c in app.registered_commands
        if c.callback and (c.name or c.callback.__name__) == command
    )
    assert callback.__doc__ and len(callback.__doc__.strip()) > 40


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command: str) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"guard {command}" in readme


def test_root_help_lists_exit_codes(runner) -> None:
    result = invoke(runner, ["--help"])
    assert result.exit_code == 0
    assert "3 model or runtime error" in result.stdout


NOT_RUNTIME = ("torch", "transformers", "onnx", "peft", "safetensors", "sklearn")
BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys
    HEAVY = %r

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"{name} is not installed (blocked by the test)")
            return None

    sys.meta_path.insert(0, Block())
    sys.argv = ["guard", *sys.argv[1:]]
    from guardcli.cli import main
    main()
    """
)


def without(*modules: str) -> str:
    """A `guard` entry point for which `modules` are not installed."""
    return BLOCKER % (modules,)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["classify", "--help"], ["--version"]])
def test_help_works_with_only_runtime_dependencies(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", without(*NOT_RUNTIME, "onnxruntime"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout


def test_python_dash_m_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "guardcli", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("guardcli ")


def test_missing_export_extra_says_what_to_install(runner, tmp_path) -> None:
    code = without(*NOT_RUNTIME)
    result = subprocess.run(
        [sys.executable, "-c", code, "synth", "csam-guard", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "pip install 'guardcli[export]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_changelog_follows_keep_a_changelog() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog")
    import guardcli

    # the released version has its section, dated, and pyproject says the same version
    assert re.search(
        rf"^## \[{re.escape(guardcli.__version__)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{guardcli.__version__}"' in pyproject


@pytest.mark.slow
def test_classify_path_needs_no_torch_or_transformers(tiny_model) -> None:
    code = without(*NOT_RUNTIME)
    result = subprocess.run(
        [sys.executable, "-c", code, "classify", "-m", str(tiny_model), "-f", "jsonl", "a kettle"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    assert '"score"' in result.stdout
