"""The docs site cannot drift from the code: the CLI reference is the app's own text, the site
builds offline with `mkdocs build --strict`, and the examples and lists in the pages are checked
against what guard does."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from guardcli.cli import app
from guardcli.core.errors import ExitCode

from .conftest import ROOT, invoke

DOCS = ROOT / "docs"
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands if c.callback)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts/gen_cli_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _manual() -> dict[str, str]:
    """The hand-written pages (everything but the generated reference)."""
    return {p.name: p.read_text(encoding="utf-8") for p in DOCS.glob("*.md") if p.name != "cli.md"}


# ------------------------------------------------------------------------- the CLI reference


def test_cli_reference_equals_the_generated_text() -> None:
    generated = _generator().render()
    assert (DOCS / "cli.md").read_text(encoding="utf-8") == generated, (
        "docs/cli.md is stale: run `make docs` (python scripts/gen_cli_docs.py)"
    )


def test_cli_reference_holds_every_command_option_and_help() -> None:
    text = _generator().render()
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="guard")
    for name in COMMANDS:
        command = root.get_command(ctx, name)  # type: ignore[attr-defined]
        assert f"\n## guard {name}\n" in text
        first_line = (command.help or "").strip().split("\n")[0]
        assert first_line and first_line in text
        for param in command.params:
            if getattr(param, "hidden", False):
                continue
            for opt in [*param.opts, *param.secondary_opts]:
                if opt.startswith("-"):
                    assert re.search(rf"`[^`\n]*{re.escape(opt)}\b", text), (name, opt)


def test_cli_reference_does_not_depend_on_the_terminal(monkeypatch) -> None:
    gen = _generator()
    monkeypatch.setenv("COLUMNS", "40")
    narrow = gen.render()
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert gen.render() == narrow


def test_generator_check_mode(tmp_path: Path) -> None:
    gen = _generator()
    stale = tmp_path / "cli.md"
    stale.write_text("# old\n", encoding="utf-8")
    assert gen.main(["--check", "--out", str(stale)]) == 1
    with contextlib.redirect_stdout(io.StringIO()):
        assert gen.main(["--out", str(stale)]) == 0
    assert gen.main(["--check", "--out", str(stale)]) == 0


# ------------------------------------------------------------------------- the site


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q"]
        + ["-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for page in DOCS.glob("*.md"):
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.exists(), page.name
    assert "guard classify" in (site / "cli" / "index.html").read_text(encoding="utf-8")


def test_every_command_has_a_manual_page() -> None:
    manual = "\n".join(_manual().values())
    for name in COMMANDS:
        assert f"guard {name}" in manual, name


@pytest.mark.parametrize("page", ["index.md", "classify.md"])
def test_exit_code_tables_match_the_contract(page: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d) \| (.+?) \|$", text, re.M))
    assert sorted(int(code) for code in rows) == sorted(int(code) for code in ExitCode)
    assert rows["3"].startswith("model or runtime error")


def test_readme_exit_codes_and_pages() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 200
    rows = dict(re.findall(r"^\| (\d) \| (.+?) \|$", readme, re.M))
    assert sorted(int(code) for code in rows) == sorted(int(code) for code in ExitCode)
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).exists(), link


def test_serve_page_lists_every_metric() -> None:
    pytest.importorskip("prometheus_client")
    from guardcli.jobs.serve.prometheus import Metrics

    page = (DOCS / "serve.md").read_text(encoding="utf-8")
    names = {family.name for family in Metrics(streams=True).registry.collect()}
    assert names  # the registry really holds series
    for name in names:
        assert f"`{name}" in page, name


STAGE = r"[a-z][a-z -]* \d+\.\d{3}s"
TIMINGS = re.compile(rf"^timings: (?:{STAGE}, )*{STAGE}; total \d+\.\d{{3}}s$")


@pytest.mark.slow
def test_timings_sample_is_what_classify_prints(runner, tiny_model: Path) -> None:
    [sample] = [
        line
        for line in (DOCS / "classify.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("timings:")
    ]
    assert TIMINGS.match(sample), sample
    result = invoke(runner, ["classify", "-m", str(tiny_model), "-f", "jsonl", "--timings", "x"])
    assert result.exit_code in (ExitCode.OK, ExitCode.FLAGGED), result.stderr
    printed = [line for line in result.stderr.splitlines() if line.startswith("timings:")]
    assert len(printed) == 1 and TIMINGS.match(printed[0]), result.stderr
    stages = re.compile(r"([a-z][a-z -]*) \d")
    assert set(stages.findall(printed[0])) <= set(stages.findall(sample)) | {"import onnxruntime"}


# ------------------------------------------------------------------------- the Python example


@pytest.mark.slow
def test_python_api_example_runs_and_agrees_with_the_cli(runner, tiny_model: Path) -> None:
    page = (DOCS / "python-api.md").read_text(encoding="utf-8")
    call = 'load_guard("csam-guard"'
    [code] = [b for b in re.findall(r"```python\n(.*?)```", page, re.S) if call in b]
    assert code.count(call) == 1
    code = code.replace(call, f"load_guard({str(tiny_model)!r}", 1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/python-api.md", "exec"), {"__name__": "__docs__"})
    lines = out.getvalue().splitlines()
    assert len(lines) == 6, lines

    # The same items through `guard classify`: the library and the CLI give the same verdicts.
    stdin = "a watercolor lighthouse\n" + json.dumps({"id": "k", "text": "a kettle"}) + "\n"
    stdin += json.dumps({"id": "b", "text": 42}) + "\n"
    stdin += json.dumps({"id": "r1", "text": "the library opens at nine"}) + "\n"
    stdin += json.dumps({"id": "r2", "text": "a kettle"}) + "\n"
    result = invoke(
        runner, ["classify", "-", "-m", str(tiny_model), "--variant", "int8", "-f", "jsonl"], stdin
    )
    assert result.exit_code == ExitCode.INPUT  # the bad record
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    for line, row in zip(lines[:3], rows[:3], strict=True):
        rid, flagged, score = line.split(" ")
        assert rid == str(row["id"]) and flagged == str(row["flagged"])
        if "error" in row:
            assert score == "None" and row["error"]["type"] == "bad_field"
        else:
            assert float(score) == pytest.approx(row["score"], abs=1e-6)
    for line, row in zip(lines[3:5], rows[3:5], strict=True):
        assert json.loads(line) == row
    assert lines[5] == f"error {int(ExitCode.MODEL)}"

    # The output the page shows has the shape the example prints.
    [shown] = re.findall(r"Its output.*?```text\n(.*?)```", page, re.S)
    shown_lines = shown.splitlines()
    assert [s.split(" ")[0] for s in shown_lines[:3]] == [s.split(" ")[0] for s in lines[:3]]
    assert shown_lines[2] == lines[2] and shown_lines[5] == lines[5]


def test_every_test_the_docs_cite_exists() -> None:
    """A page that says "tested by tests/x.py::test_y" names a file and a test that are there."""
    pages = {**_manual(), "README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    cited = 0
    for name, text in pages.items():
        for path, test in re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", text):
            assert (ROOT / path).is_file(), f"{name} cites {path}, which does not exist"
            if test:
                source = (ROOT / path).read_text(encoding="utf-8")
                assert f"def {test}(" in source, f"{name} cites {path}::{test}, not in the file"
            cited += 1
    assert cited > 5  # the reliability page cites its tests
