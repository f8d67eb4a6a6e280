"""The CLI speaks with one voice: examples in every help, -V, shell completion, one --format
vocabulary, one --backend vocabulary, '-' for stdin, hints that name options that exist,
third-party noise off stderr unless --verbose, and a classify table that shows what each
family says."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import typer.main

from guardcli import __version__
from guardcli.cli import app
from guardcli.cli._options import BACKEND_NAMES
from guardcli.cli._output import command_options, own_options
from guardcli.cli._tables import short_text, verdict_table
from guardcli.core.errors import ExitCode

from ..conftest import ROOT, invoke

CLICK = typer.main.get_command(app)
COMMANDS = sorted(CLICK.commands)  # type: ignore[attr-defined]
CLI_SRC = ROOT / "src" / "guardcli" / "cli"


def _param(command: str, option: str):
    cmd = CLICK.commands[command]  # type: ignore[attr-defined]
    return next(p for p in cmd.params if option in p.opts)


# ------------------------------------------------------------------------------ help and -V


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(runner, command: str) -> None:
    result = invoke(runner, [command, "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout
    after = result.stdout.split("Examples:", 1)[1]
    assert f"guard {command}" in after, f"no `guard {command} ...` example"


def test_root_help_has_examples_and_completion(runner) -> None:
    result = invoke(runner, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "guard classify" in result.stdout
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(runner, flag: str) -> None:
    result = invoke(runner, [flag])
    assert result.exit_code == 0
    assert result.stdout == f"guardcli {__version__}\n"


def test_show_completion_prints_a_script(runner, monkeypatch) -> None:
    # Typer detects the shell from the parent processes (sh under make, bash in a terminal).
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    result = invoke(runner, ["--show-completion"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "_GUARD_COMPLETE" in result.stdout and "complete " in result.stdout


# --------------------------------------------------------------------- one --format vocabulary


def _help_formats(command: str) -> list[str]:
    help_text = _param(command, "--format").help
    match = re.match(r"([a-z]+(?:\|[a-z]+)+)\.", help_text)
    assert match, help_text
    return match.group(1).split("|")


def test_format_help_is_one_of_two_shared_lists() -> None:
    helps = {c: _param(c, "--format").help for c in COMMANDS if _has(c, "--format")}
    assert set(helps) >= {"classify", "sweep", "bench", "compare", "models", "probe-cpu"}
    assert helps["classify"].startswith("table|jsonl|json|csv.")
    for command in ("sweep", "bench", "compare", "models", "probe-cpu"):
        assert helps[command] == helps["models"], command  # reports: one list, one wording


def _has(command: str, option: str) -> bool:
    return any(option in p.opts for p in CLICK.commands[command].params)  # type: ignore[attr-defined]


def test_sweep_format_accepts_exactly_what_help_says(runner, tmp_path: Path) -> None:
    scores = tmp_path / "scores.jsonl"
    rows = [{"id": str(i), "score": i / 10, "label": int(i >= 5)} for i in range(10)]
    scores.write_text("".join(json.dumps(r) + "\n" for r in rows))
    said = _help_formats("sweep")
    assert said == ["table", "json"]
    for fmt in said:
        result = invoke(runner, ["sweep", str(scores), "--format", fmt, "-q"])
        assert result.exit_code == 0, (fmt, result.stderr)
    json.loads(invoke(runner, ["sweep", str(scores), "-f", "json", "-q"]).stdout)
    for fmt in ("jsonl", "csv"):  # what the old help promised and sweep never wrote
        result = invoke(runner, ["sweep", str(scores), "--format", fmt])
        assert result.exit_code == ExitCode.INPUT
        assert result.stderr == f"Error: Unknown format '{fmt}'.\nChoose one of: table, json.\n"


@pytest.mark.parametrize("command", ["models", "probe-cpu"])
def test_report_formats_accept_what_help_says(runner, command: str) -> None:
    for fmt in _help_formats(command):
        result = invoke(runner, [command, "--format", fmt])
        assert result.exit_code == 0, (fmt, result.stderr)


# ------------------------------------------------------------------- one --backend vocabulary


def test_serve_backend_takes_the_same_names_as_the_others() -> None:
    serve_help = _param("serve", "--backend").help
    for command in ("classify", "sweep", "bench"):
        assert _param(command, "--backend").help == serve_help, command
    assert "onnxruntime|openvino" in serve_help


@pytest.mark.parametrize("backend", [*BACKEND_NAMES, "onnx"])
def test_serve_accepts_every_backend_name(runner, tmp_path: Path, backend: str) -> None:
    """A known name gets past the door: what fails is the missing model, not the name."""
    result = invoke(runner, ["serve", "-m", str(tmp_path / "nowhere"), "--backend", backend])
    assert "Unknown backend" not in result.stderr
    assert result.exit_code != 0


def test_serve_unknown_backend_lists_the_shared_names(runner) -> None:
    result = invoke(runner, ["serve", "--backend", "tpu"])
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr == (
        "Error: Unknown backend 'tpu'.\nChoose one of: onnxruntime, openvino, torch, llamacpp.\n"
    )


# --------------------------------------------------------------------------- '-' is stdin


def test_bench_data_dash_reads_stdin(runner, tiny_model: Path) -> None:
    args = ["bench", "-m", str(tiny_model), "--variant", "fp32", "--batch-size", "1"]
    args += ["--duration", "0.1", "--data", "-", "-f", "json", "-q"]
    result = invoke(runner, args, input='a red kite\n\n{"text": "a teapot"}\ntea time\n')
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["data"] == "-"
    assert report["settings"]["prompts"] == 3


# ------------------------------------------------------------- messages name real options


def _option_names(command: str) -> set[str]:
    cmd = CLICK.commands[command]  # type: ignore[attr-defined]
    options = [p for p in cmd.params if p.param_type_name == "option"]
    return {o for p in options for o in (*p.opts, *p.secondary_opts)}


def test_command_options_match_what_click_builds() -> None:
    for registered in app.registered_commands:
        name, names = command_options(registered.callback)
        name = registered.name or name
        assert names == _option_names(name) - {"-h", "--help"}, name


def _fail_texts(path: Path) -> list[str]:
    """The literal text of every fail(...) message and hint in a command module."""
    texts = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "fail":
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                parts = [
                    n.value
                    for n in ast.walk(arg)
                    if isinstance(n, ast.Constant) and isinstance(n.value, str)
                ]
                texts.append("".join(parts))
    return texts


MODULES = {"probe-cpu": "probe_cpu.py"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_a_command_names_in_its_errors_exists(command: str) -> None:
    path = CLI_SRC / MODULES.get(command, f"{command}.py")
    names = _option_names(command)
    for text in _fail_texts(path):
        unquoted = re.sub(r"`[^`]*`", "", text)  # `guard other --opt` names another command's
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", unquoted):
            assert option in names, f"{command}: {text!r} names {option}, which it lacks"


def test_fetch_unknown_model_does_not_point_at_model(runner) -> None:
    result = invoke(runner, ["fetch", "no-such-model", "-q"])
    assert result.exit_code != 0
    assert "Unknown model 'no-such-model'." in result.stderr
    assert "--model" not in result.stderr
    assert "--from DIR" in result.stderr


def test_compare_missing_variant_points_at_variants(runner, tiny_model: Path, tmp_path) -> None:
    import shutil

    folder = tmp_path / "fp32-only"
    shutil.copytree(tiny_model, folder)
    for name in ("model_fp16.onnx", "model_quantized.onnx"):
        (folder / "onnx" / name).unlink()
    data = tmp_path / "d.jsonl"
    data.write_text('{"id": "1", "text": "a teapot", "label": 0}\n')
    result = invoke(runner, ["compare", str(folder), "--data", str(data), "--variants", "fp16"])
    assert result.exit_code != 0
    assert "has no fp16 variant" in result.stderr
    assert re.search(r"--variant\b(?!s)", result.stderr) is None, result.stderr
    assert "--variants" in result.stderr


def test_own_options_keeps_sentences_and_backticked_commands() -> None:
    names = {"--model", "--variant"}
    hint = "Run `guard fetch x --variant int8 --revision main`. Or pass --from DIR. Use --variant."
    assert own_options(hint, "classify", names) == "Run `guard fetch x --variant int8 " + (
        "--revision main`. Use --variant."
    )
    assert own_options("Pass --nope.", "classify", names) is None
    assert own_options(None, "classify", names) is None
    assert own_options("One --model.\nTwo:  --variant x.", "c", names) == (
        "One --model.\nTwo:  --variant x."
    )


# ------------------------------------------------------------------ third-party noise


EMITTER = textwrap.dedent(
    """
    import logging, sys, warnings
    import guardcli.families.loader

    load = guardcli.families.loader.load_guard

    def noisy(*args, **kwargs):
        # what transformers, onnxruntime's quantizer and Ray say on a normal run
        warnings.warn("`resume_download` is deprecated", FutureWarning)
        logging.getLogger("transformers.modeling_utils").warning(
            "falling back to its reference PyTorch implementation"
        )
        logging.getLogger().warning("Please consider to run pre-processing before quantization")
        logging.getLogger("ray.data").info("Starting execution of Dataset")
        logging.getLogger("guardcli.serve").warning("guard's own warning")
        return load(*args, **kwargs)

    guardcli.families.loader.load_guard = noisy
    sys.argv = ["guard", *sys.argv[1:]]
    from guardcli.cli import main
    main()
    """
)
NOISE = ("resume_download", "reference PyTorch", "pre-processing")


def _classify(tiny_model: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GUARD_VERBOSE", "GUARD_DEBUG")}
    env["PYTHONWARNINGS"] = "default"  # as a user with warnings on would run it
    args = ["classify", "-m", str(tiny_model), "--variant", "fp32", "-f", "jsonl", *extra]
    return subprocess.run(
        [sys.executable, "-c", EMITTER, *args, "a red kite"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.slow
def test_normal_run_prints_only_guards_own_lines(tiny_model: Path) -> None:
    result = _classify(tiny_model)
    assert result.returncode in (0, 1), result.stderr
    assert result.stderr.splitlines() == [
        "guard's own warning",
        f"note: {tiny_model} is a synthetic model with random weights; its verdicts are "
        "meaningless.",
    ]
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.slow
def test_verbose_lets_third_party_lines_through(tiny_model: Path) -> None:
    result = _classify(tiny_model, "--verbose")
    assert result.returncode in (0, 1), result.stderr
    for noise in NOISE:
        assert noise in result.stderr, noise
    assert len(result.stdout.splitlines()) == 1


# ---------------------------------------------------------------------- the classify table


def _header(table: str) -> list[str]:
    line = next(line for line in table.splitlines() if " id " in line)
    return [cell.strip() for cell in re.split(r"[┃│]", line) if cell.strip()]


def test_classify_table_shows_score_and_shortened_text(runner, tiny_model: Path) -> None:
    long_text = "a watercolor   lighthouse\nat dusk " * 10
    args = ["classify", "-m", str(tiny_model), "--variant", "fp32", "-f", "table"]
    result = invoke(runner, [*args, "a teapot", long_text])
    rows = [
        json.loads(line)
        for line in invoke(runner, [*args[:-1], "jsonl", "a teapot", long_text]).stdout.split("\n")
        if line
    ]
    table = result.stdout
    assert _header(table) == ["id", "verdict", "score", "tokens", "note", "text"]
    assert all(f"{r['score']:.4f}" in table for r in rows)
    assert "a teapot" in table
    assert "a watercolor lighthouse at dusk a watercolor" in table  # whitespace folded
    assert "…" in table and long_text.strip() not in table


def test_table_for_qwen3guard_gen_shows_severity_categories_refusal(runner, monkeypatch):
    from ..families.qwen3guard_gen.test_qwen3guard import MARKER, _Server

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with _Server() as server:
        base = ["classify", "-m", "qwen3guard-gen", "--endpoint", server.url, "-q", "-f", "table"]
        prompt = invoke(runner, [*base, "-"], input=f"a lighthouse\nthe {MARKER} plan\n")
        reply = invoke(runner, [*base, "--response", "I will not help.", f"the {MARKER} plan"])
    header = _header(prompt.stdout)
    assert header == ["id", "verdict", "score", "categories", "severity", "tokens", "note", "text"]
    assert "Violent" in prompt.stdout and "Unsafe" in prompt.stdout and "Safe" in prompt.stdout
    assert "refusal" in _header(reply.stdout)
    refusal = _header(reply.stdout).index("refusal")
    row = next(line for line in reply.stdout.splitlines() if line.startswith("│ 1 "))
    assert [c.strip() for c in re.split(r"[┃│]", row) if c.strip()][refusal] == "no"


def test_table_for_opencc_shows_flagged_categories() -> None:
    import io

    rows = [
        {
            "id": "1",
            "flagged": True,
            "score": 0.91,
            "label": "Hate Speech",
            "categories": {
                "Hate Speech": {"score": 0.91, "threshold": 0.5, "flagged": True},
                "CBRN": {"score": 0.2, "threshold": 0.5, "flagged": False},
            },
            "tokens": 5,
        },
        {
            "id": "2",
            "flagged": False,
            "score": 0.3,
            "label": "Benign",
            "categories": {
                "Hate Speech": {"score": 0.1, "threshold": 0.5, "flagged": False},
                "CBRN": {"score": 0.3, "threshold": 0.5, "flagged": False},
            },
            "tokens": 4,
        },
        {"id": "3", "error": {"type": "empty_text", "message": "empty text"}, "flagged": None},
    ]
    out = io.StringIO()
    verdict_table(rows, out, ["first text", "second text", None])
    table = out.getvalue()
    assert _header(table) == ["id", "verdict", "score", "label", "categories", "tokens", "note"] + [
        "text"
    ]
    assert "Hate Speech 0.91" in table and "CBRN 0.20" not in table  # flagged ones only
    assert "CBRN 0.30" in table  # nothing flagged: the top category
    assert "empty_text: empty text" in table


@pytest.mark.slow
def test_classify_table_for_opencc_has_categories(runner, opencc_cm: Path) -> None:
    args = ["classify", "-m", str(opencc_cm), "-q", "-f", "table", "a teapot", "tea time"]
    result = invoke(runner, args)
    assert result.exit_code in (0, 1), result.stderr
    assert "categories" in _header(result.stdout)


def test_table_cells_are_not_markup() -> None:
    import io

    out = io.StringIO()
    rows = [{"id": "[bold]x", "flagged": False, "score": 0.1, "tokens": 3}]
    verdict_table(rows, out, ["[red]not markup[/]"])
    assert "[bold]x" in out.getvalue() and "[red]not markup[/]" in out.getvalue()


def test_short_text() -> None:
    assert short_text("a\n\tb  c") == "a b c"
    assert short_text("x" * 100, 10) == "x" * 9 + "…"
    assert short_text(None) == ""
    wide = short_text("茶馆设计标志" * 10, 11)  # two cells a character
    assert wide.endswith("…") and len(wide) == 6


def test_quantize_calibration_dash_reads_stdin(runner, tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    args = ["quantize", str(folder), "--to", "int8", "--static", "--calibration", "-"]
    result = invoke(runner, args, input='a teapot\n{"text": "tea time"}\na red kite\n')
    assert result.exit_code == 0, result.stderr
    assert "3 texts" in result.stderr
    assert result.stdout.strip() == str(folder / "onnx" / "model_quantized.onnx")


def test_stdin_as_file_passes_paths_through(monkeypatch, tmp_path: Path) -> None:
    import io

    from guardcli.cli._output import stdin_as_file

    given = tmp_path / "x.jsonl"
    with stdin_as_file(given) as path:
        assert path == given
    with stdin_as_file(None) as path:
        assert path is None
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n")))
    with stdin_as_file(Path("-")) as path:
        assert path is not None and path.read_bytes() == b"one\ntwo\n"
    assert not path.exists()


@pytest.mark.slow
def test_synth_prints_only_its_own_lines(tmp_path: Path) -> None:
    """`guard synth` trains and exports through transformers and torch: their progress bars
    ("Writing model shards") and the TorchScript exporter's DeprecationWarning stay off stderr."""
    env = {k: v for k, v in os.environ.items() if k not in ("GUARD_VERBOSE", "GUARD_DEBUG")}
    env["PYTHONWARNINGS"] = "default"
    out = tmp_path / "bert"  # the quickest builder through both (no training)
    result = subprocess.run(
        [sys.executable, "-m", "guardcli", "synth", "hf-seqcls", "--arch", "bert"]
        + ["--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    others = [
        line for line in result.stderr.splitlines() if not line.startswith(("synth:", "wrote "))
    ]
    assert others == []
