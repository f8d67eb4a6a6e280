"""Every number and name is validated at the door: exit 2, naming the option or the file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardcli.core import thresholds
from guardcli.core.errors import ExitCode, GuardError

from ..conftest import invoke

BAD_THRESHOLDS = ["nan", "inf", "-inf", "1.5", "98.4", "-1", "1e400", "high"]


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity, as every strict JSON reader does."""

    def refuse(token: str):
        raise ValueError(f"invalid JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# ----------------------------------------------------------------------------- one parser


@pytest.mark.slow
@given(st.one_of(st.text(), st.floats(), st.integers(), st.booleans(), st.none()))
def test_threshold_parser_gives_a_probability_or_an_input_error(value) -> None:
    try:
        got = thresholds.parse_threshold(value, "--threshold")
    except GuardError as err:
        assert err.code == ExitCode.INPUT
        assert "--threshold" in err.message
        return
    assert isinstance(got, float)
    assert math.isfinite(got) and 0.0 <= got <= 1.0
    # what it accepted is the number written, not a clipped or rounded one
    assert got == float(value.strip() if isinstance(value, str) else value)


@pytest.mark.parametrize("text", ["0", "1", "0.5", " 0.984 ", "1e-3", "1.0"])
def test_threshold_parser_accepts_the_unit_interval(text: str) -> None:
    assert thresholds.parse_threshold(text, "x") == float(text)


@pytest.mark.parametrize("value", [math.nan, math.inf, 1.5, -1, 98.4, "0.5", True, None])
def test_thresholds_file_values(tmp_path: Path, value) -> None:
    path = tmp_path / "thresholds.json"
    path.write_text(json.dumps({"Violence": value}))  # json.dumps writes NaN/Infinity tokens
    with pytest.raises(GuardError) as info:
        thresholds.read_thresholds(path)
    assert info.value.code == ExitCode.INPUT
    assert str(path) in info.value.message and "'Violence'" in info.value.message


def test_load_guard_refuses_what_the_options_refuse(tiny_model: Path) -> None:
    from guardcli import load_guard

    for kwargs in (
        {"threshold": math.nan},
        {"threshold": 1.5},
        {"max_length": -5},
        {"batch_size": 0},
        {"threads": 0},
        {"thresholds": {"Violence": math.inf}},
    ):
        with pytest.raises(GuardError) as info:
            load_guard(tiny_model, variant="fp32", **kwargs)
        assert info.value.code == ExitCode.INPUT
        assert next(iter(kwargs)) in info.value.message


# ----------------------------------------------------------------------------- options


@pytest.mark.parametrize("value", BAD_THRESHOLDS)
@pytest.mark.parametrize("command", ["classify", "sweep", "compare", "serve"])
def test_threshold_option_on_every_command(
    runner, tiny_model: Path, tmp_path: Path, command: str, value: str
) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": 1, "text": "a lighthouse", "label": 0}\n')
    args = {
        "classify": ["classify", "-m", str(tiny_model), "--variant", "fp32", "-f", "jsonl", "x"],
        "sweep": ["sweep", str(data), "-m", str(tiny_model), "--variant", "fp32"],
        "compare": ["compare", str(tiny_model), "--data", str(data), "--variants", "fp32"],
        # never a server on the base commit: a model folder that does not exist
        "serve": ["serve", "-m", str(tmp_path / "missing")],
    }[command]
    result = invoke(runner, [*args, "--threshold", value])
    assert result.exit_code == 2, result.stderr
    assert "'--threshold'" in result.stderr
    assert result.stdout == ""


def test_threshold_option_edges_still_work(runner, tiny_model: Path) -> None:
    args = ["classify", "-m", str(tiny_model), "--variant", "fp32", "-f", "jsonl", "a", "b"]
    everything = invoke(runner, [*args, "-t", "0"])
    assert everything.exit_code == 1, everything.stderr
    verdicts = [json.loads(line) for line in everything.stdout.splitlines()]
    assert [v["flagged"] for v in verdicts] == [True, True]  # score >= 0 always
    assert {v["threshold"] for v in verdicts} == {0.0}


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--batch-size", "0"),
        ("--batch-size", "-3"),
        ("--threads", "0"),
        ("--max-length", "0"),
        ("--max-length", "-5"),
        ("--concurrency", "0"),
    ],
)
def test_counts_must_be_positive(runner, tiny_model: Path, option: str, value: str) -> None:
    args = ["classify", "-m", str(tiny_model), "--variant", "fp32", "-f", "jsonl", "x"]
    result = invoke(runner, [*args, option, value])
    assert result.exit_code == 2, result.stderr
    assert f"'{option}'" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["sweep", "DATA", "--batch-size", "0"],
        ["sweep", "DATA", "--threads", "0"],
        ["sweep", "DATA", "--target-recall", "nan"],
        ["sweep", "DATA", "--max-fpr", "1.5"],
        ["bench", "--synthetic", "--seq-len", "0"],
        ["bench", "--synthetic", "--duration", "nan"],
        ["bench", "--synthetic", "--duration", "0"],
        ["bench", "--synthetic", "--threads", "0"],
        ["serve", "-m", "MISSING", "--max-length", "0"],
        ["serve", "-m", "MISSING", "--threads", "0"],
        ["classify", "--engine", "ray", "--workers", "0", "x"],
        ["classify", "--engine", "ray", "--cpus-per-worker", "nan", "x"],
        ["compare", "MODEL", "--data", "DATA", "--max-flip-rate", "nan"],
        ["bench", "--synthetic", "--price-per-hour", "nan"],
        ["serve", "-m", "MISSING", "--timeout", "nan"],
        ["serve", "-m", "MISSING", "--timeout", "0"],
        ["serve", "-m", "MISSING", "--max-wait-ms", "nan"],
        ["export", "MODEL", "--out", "DATA", "--tolerance", "nan"],  # would pass every check
        ["export", "MODEL", "--out", "DATA", "--tolerance", "-1"],
    ],
)
def test_other_numbers_are_range_checked(runner, tiny_model, tmp_path, args) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text('{"id": 1, "score": 0.2, "label": 0}\n{"id": 2, "score": 0.8, "label": 1}\n')
    names = {"DATA": str(data), "MODEL": str(tiny_model), "MISSING": str(tmp_path / "missing")}
    result = invoke(runner, [names.get(a, a) for a in args])
    assert result.exit_code == 2, result.stderr
    option = [a for a in args if a.startswith("--")][-1]
    assert f"'{option}'" in result.stderr


# ----------------------------------------------------------------------------- models.toml


def _models(runner, monkeypatch, tmp_path: Path, text: str | bytes):
    path = tmp_path / "models.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    monkeypatch.setenv("GUARD_MODELS", str(path))
    return path, invoke(runner, ["models", "-f", "json"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("threshold = nan", "[models.csam-guard] threshold is nan, outside [0, 1]."),
        ("threshold = inf", "[models.csam-guard] threshold is inf, outside [0, 1]."),
        ("threshold = 98.4", "[models.csam-guard] threshold is 98.4, outside [0, 1]."),
        ("threshold = -1", "[models.csam-guard] threshold is -1, outside [0, 1]."),
        ("max_length = -5", "[models.csam-guard] max_length must be a whole number >= 1, not -5."),
        ("max_length = 0", "[models.csam-guard] max_length must be a whole number >= 1, not 0."),
        ('family = "nope"', "[models.csam-guard] family = 'nope' is not a model family"),
    ],
)
def test_bad_models_toml_values(runner, monkeypatch, tmp_path, body: str, message: str) -> None:
    path, result = _models(runner, monkeypatch, tmp_path, f"[models.csam-guard]\n{body}\n")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"Error: {path}: {message}")
    assert result.stdout == ""


def test_unknown_family_in_a_new_entry(runner, monkeypatch, tmp_path) -> None:
    path, result = _models(
        runner, monkeypatch, tmp_path, '[models.x]\nrepo = "a/b"\nfamily = "nope"\n'
    )
    assert result.exit_code == 2
    assert f"{path}: [models.x] family = 'nope'" in result.stderr
    known = (
        "Known families: seqcls, dialogue, opencc, qwen3guard-gen, llama-guard, qwen3guard-stream, "
        "hf-seqcls."
    )
    assert known in result.stderr


def test_non_utf8_models_toml(runner, monkeypatch, tmp_path) -> None:
    path, result = _models(runner, monkeypatch, tmp_path, b'[models.x]\nrepo = "a/\xff"\n')
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"Error: {path} is not valid TOML: it is not UTF-8 text")


def test_models_json_is_strict_json(runner, monkeypatch, tmp_path) -> None:
    _, result = _models(runner, monkeypatch, tmp_path, "[models.csam-guard]\nthreshold = 0.984\n")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in _strict_json(result.stdout)}
    assert rows["csam-guard"]["threshold"] == 0.984
    # the file cannot smuggle a NaN in; and json.dumps is told never to write one
    _, bad = _models(runner, monkeypatch, tmp_path, "[models.csam-guard]\nthreshold = nan\n")
    assert bad.exit_code == 2 and "NaN" not in bad.stdout


def test_new_entry_takes_its_family_defaults(monkeypatch, tmp_path) -> None:
    from guardcli.core.catalog import load_catalog

    path = tmp_path / "models.toml"
    path.write_text('[models.mine]\nrepo = "me/mine"\nfamily = "dialogue"\n')
    entry = load_catalog(path)["mine"]
    assert entry.max_length == 4096  # the dialogue family's context, as its local folders get


# ----------------------------------------------------------------------------- no leaks


def test_override_changes_only_the_entry_it_names(
    monkeypatch, tmp_path, tiny_model: Path, intent_model: Path
) -> None:
    from guardcli.core.catalog import BUILTIN, load_catalog
    from guardcli.core.resolve import resolve
    from guardcli.families.dialogue.synthetic import DIALOGUE_MAX_LENGTH
    from guardcli.families.seqcls.synthetic import CSAM_GUARD_MAX_LENGTH

    path = tmp_path / "models.toml"
    path.write_text("[models.csam-guard]\nthreshold = 0.984\nmax_length = 100\n")
    monkeypatch.setenv("GUARD_MODELS", str(path))
    entry = load_catalog()["csam-guard"]
    assert (entry.threshold, entry.max_length) == (0.984, 100)  # the entry it names changes

    seqcls = resolve(tiny_model, "fp32")
    builtin = BUILTIN["csam-guard"]
    assert (seqcls.threshold, seqcls.max_length) == (builtin.threshold, CSAM_GUARD_MAX_LENGTH)
    dialogue = resolve(intent_model, "fp32")
    assert dialogue.family == "dialogue"
    assert (dialogue.threshold, dialogue.max_length) == (0.5, DIALOGUE_MAX_LENGTH)


def test_override_does_not_reach_a_local_folder_through_the_cli(
    runner, monkeypatch, tmp_path, tiny_model: Path
) -> None:
    path = tmp_path / "models.toml"
    path.write_text("[models.csam-guard]\nthreshold = 0.984\n")
    monkeypatch.setenv("GUARD_MODELS", str(path))
    args = ["classify", "-m", str(tiny_model), "--variant", "fp32", "-f", "jsonl", "x"]
    result = invoke(runner, args)
    assert result.exit_code in (0, 1), result.stderr
    assert json.loads(result.stdout)["threshold"] == 0.5


@pytest.mark.slow
def test_a_folder_shadowing_a_catalog_name_gets_a_note(
    runner, monkeypatch, tmp_path, tiny_model: Path
) -> None:
    (tmp_path / "csam-guard").symlink_to(tiny_model, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    base = ["classify", "--variant", "fp32", "-f", "jsonl", "x"]
    result = invoke(runner, [*base, "-m", "csam-guard"])
    assert result.exit_code in (0, 1), result.stderr
    notes = [line for line in result.stderr.splitlines() if "catalog model" in line]
    assert notes == [
        f"note: using the folder {tmp_path / 'csam-guard'}, not the catalog model 'csam-guard' "
        "(pass --model ./csam-guard to silence this, or run from another folder)."
    ]
    assert json.loads(result.stdout)["variant"] == "fp32"
    # written as a path, there is nothing to say
    quiet = invoke(runner, [*base, "-m", "./csam-guard"])
    assert quiet.exit_code in (0, 1)
    assert "catalog model" not in quiet.stderr


# ----------------------------------------------------------------------------- silent passes


def test_write_thresholds_that_would_write_nothing_fails(runner, tmp_path) -> None:
    data = tmp_path / "multi.jsonl"
    # binary labels only: no category has per-category labels, so none gets a threshold
    data.write_text(
        '{"id": 1, "label": 1, "categories": {"A": 0.9, "B": 0.2}}\n'
        '{"id": 2, "label": 0, "categories": {"A": 0.1, "B": 0.3}}\n'
    )
    out = tmp_path / "thresholds.json"
    result = invoke(runner, ["sweep", str(data), "-f", "json", "--write-thresholds", str(out)])
    assert result.exit_code == 2, result.stderr
    assert f"--write-thresholds {out}: no category has a threshold" in result.stderr
    assert "without per-category labels" in result.stderr
    assert not out.exists()


def test_write_thresholds_writes_a_file_classify_accepts(runner, tmp_path) -> None:
    data = tmp_path / "multi.jsonl"
    data.write_text(
        '{"id": 1, "labels": ["A"], "categories": {"A": 0.9, "B": 0.2}}\n'
        '{"id": 2, "labels": [], "categories": {"A": 0.1, "B": 0.3}}\n'
    )
    out = tmp_path / "thresholds.json"
    result = invoke(runner, ["sweep", str(data), "-f", "json", "--write-thresholds", str(out)])
    assert result.exit_code == 0, result.stderr
    written = thresholds.read_thresholds(out)
    assert written and set(written) <= {"A", "B"}


def test_synth_refuses_a_non_empty_out(runner, monkeypatch, tmp_path) -> None:
    import guardcli.families.seqcls.synthetic as synthetic

    out = tmp_path / "model"
    (out / "onnx").mkdir(parents=True)
    (out / "onnx" / "model.onnx").write_bytes(b"a real model")
    built: list[Path] = []

    def fake(path, **kwargs):
        built.append(Path(path))
        return Path(path)

    monkeypatch.setattr(synthetic, "synth_csam_guard", fake)
    result = invoke(runner, ["synth", "csam-guard", "--out", str(out)])
    assert result.exit_code == 2, result.stderr
    assert f"--out {out} already holds files" in result.stderr
    assert "--force" in result.stderr
    assert built == [] and (out / "onnx" / "model.onnx").read_bytes() == b"a real model"

    forced = invoke(runner, ["synth", "csam-guard", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.stderr
    assert built == [out]
    # an empty or new folder needs no --force
    assert invoke(runner, ["synth", "csam-guard", "--out", str(tmp_path / "new")]).exit_code == 0


def test_synth_help_lists_force(runner) -> None:
    result = invoke(runner, ["synth", "--help"])
    assert "--force" in result.stdout


def test_known_families_are_the_registered_ones() -> None:
    import guardcli.families as families
    from guardcli.core import registry

    for name in registry.names():
        assert families.get_family(name).family == name
    assert set(families._FAMILIES) == set(registry.names())
