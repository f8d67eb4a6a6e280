"""`guard classify --pipeline`: OpenCC-style escalation (screens in order, then a judge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardcli.families.loader import load_guard
from guardcli.families.opencc.frame import HARM_CATEGORIES

from ..conftest import invoke

TEXTS = "a watercolor of a lighthouse\nhow do I bake bread?\n"


def write_pipeline(
    tmp_path: Path,
    jb: Path,
    cm: Path,
    *,
    action="block",
    jb_t=1.0,
    cm_t=0.0,
    judge: str | None = None,
) -> Path:
    (tmp_path / "cm.json").write_text(json.dumps(dict.fromkeys(HARM_CATEGORIES, cm_t)))
    lines = [
        "name: escalation",
        f"default_action: {action}",
        "stages:",
        "  - name: jailbreak",
        f"    model: {jb}",
        f"    threshold: {jb_t}",
        "  - name: moderation",
        f"    model: {cm}",
        "    thresholds: cm.json",
    ]
    if judge:
        lines += [
            "  - name: judge",
            "    role: judge",
            "    model: qwen3guard-gen",
            f"    endpoint: {judge}",
        ]
    path = tmp_path / "pipeline.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_stages_are_loaded_from_guard_specs(tmp_path, tiny_model) -> None:
    from guardcli.core.spec import GuardSpec
    from guardcli.jobs.pipeline import load_pipeline

    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "stages:\n"
        f"  - {{name: first, model: {tiny_model}, variant: fp32, threshold: 0.3}}\n"
        f"  - {{name: second, model: {tiny_model}, variant: int8}}\n"
    )
    shared = GuardSpec(batch_size=4, threads=1, fail_closed=True)
    pipe = load_pipeline(path, shared)
    first, second = pipe.stages
    assert first.spec == GuardSpec(
        model=str(tiny_model), variant="fp32", threshold=0.3, batch_size=4, threads=1
    )
    assert second.spec == GuardSpec(model=str(tiny_model), variant="int8", batch_size=4, threads=1)
    assert pipe.fail_closed  # the pipeline applies it, not each stage
    assert first.guard is not None and second.guard is not None
    assert (first.guard.threshold, first.guard.batch_size, first.guard.threads) == (0.3, 4, 1)
    assert second.guard.variant == "int8"
    # the keyword form builds the same stages
    by_keywords = load_pipeline(path, batch_size=4, threads=1, fail_closed=True)
    assert [s.spec for s in by_keywords.stages] == [first.spec, second.spec]


def run(runner, path: Path, data: str = TEXTS):
    result = invoke(runner, ["classify", "--pipeline", str(path), "-f", "jsonl", "-"], input=data)
    return result, [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.slow
def test_screens_flag_and_block(runner, tmp_path, opencc_jb, opencc_cm) -> None:
    result, rows = run(runner, write_pipeline(tmp_path, opencc_jb, opencc_cm))
    assert result.exit_code == 1, result.stderr
    assert [r["decision"] for r in rows] == ["block", "block"]
    direct = load_guard(opencc_cm, threshold=0.0).classify(TEXTS.splitlines())
    for row, verdict in zip(rows, direct, strict=True):
        assert row["flagged"] is True and row["label"] == "block" and row["model"] == "escalation"
        assert list(row["stages"]) == ["jailbreak", "moderation"]
        assert row["stages"]["jailbreak"]["flagged"] is False
        assert row["stages"]["moderation"]["score"] == verdict.score
        assert "id" not in row["stages"]["moderation"]


@pytest.mark.slow
def test_nothing_flagged_is_allowed(runner, tmp_path, opencc_jb, opencc_cm) -> None:
    result, rows = run(runner, write_pipeline(tmp_path, opencc_jb, opencc_cm, cm_t=1.0))
    assert result.exit_code == 0, result.stderr
    assert [r["decision"] for r in rows] == ["allow", "allow"]
    assert all(r["flagged"] is False for r in rows)


@pytest.mark.slow
def test_annotate_escalates_instead_of_blocking(runner, tmp_path, opencc_jb, opencc_cm) -> None:
    result, rows = run(runner, write_pipeline(tmp_path, opencc_jb, opencc_cm, action="annotate"))
    assert result.exit_code == 1
    assert [r["decision"] for r in rows] == ["escalate", "escalate"]
    assert all(len(r["categories"]) == 11 for r in rows)  # the annotations travel along


@pytest.mark.slow
def test_first_flag_goes_to_the_remote_judge(runner, tmp_path, opencc_jb, opencc_cm) -> None:
    """Every record is flagged by the first screen; a qwen3guard-gen judge served over an
    OpenAI-compatible API (a stand-in on 127.0.0.1) clears or blocks each one."""
    from ..families.qwen3guard_gen.test_qwen3guard import MARKER, _Server

    with _Server() as server:
        path = write_pipeline(tmp_path, opencc_jb, opencc_cm, jb_t=0.0, judge=server.url)
        result, rows = run(runner, path, TEXTS + f"the {MARKER} plan\n" + "{broken\n")
    assert result.exit_code == 2  # the broken record outranks the flags
    assert [r.get("decision") for r in rows] == ["allow", "allow", "block", None]
    for row in rows[:3]:
        assert list(row["stages"]) == ["jailbreak", "judge"]  # moderation skipped
    assert [r["stages"]["judge"]["severity"] for r in rows[:3]] == ["Safe", "Safe", "Unsafe"]
    assert rows[3]["error"]["type"] == "invalid_json" and rows[3]["flagged"] is None
    assert len(server.requests) == 3


def test_a_failing_judge_escalates_instead_of_failing_the_run() -> None:
    from guardcli.core.errors import GuardError
    from guardcli.core.verdicts import Record
    from guardcli.jobs.pipeline import Stage

    class Down:
        def judge_records(self, records):  # through the verdict cache where one is set
            raise GuardError("http://127.0.0.1:9/v1 failed after 5 attempts: refused.")

    stage = Stage("judge", "qwen3guard-gen", role="judge", guard=Down(), endpoint="http://x/v1")
    (verdict,) = stage.judge_records([Record(id="1", text="a kettle")])
    assert verdict.error is not None and verdict.error.type == "judge_unavailable"
    assert "failed after 5 attempts" in verdict.error.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "default_action: drop\nstages: [{model: x}]\n",
            "default_action must be block or annotate",
        ),
        ("stages: []\n", "`stages` must be a non-empty list"),
        ("stages: [{model: a, colour: red}]\n", "unknown key(s): colour"),
        ("stages: [{model: a, role: judge, endpoint: http://x}]\n", "at least one screen"),
        ("stages: [\n", "not valid YAML"),
        (
            "stages: [{model: a, threshold: 1.5}]\n",
            "p.yaml: stage 1's threshold is 1.5, outside [0, 1]",
        ),
        ("stages: [{model: a}, {model: b, threshold: .nan}]\n", "stage 2's threshold is nan"),
    ],
)
def test_bad_pipeline_files(runner, tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    result = invoke(runner, ["classify", "--pipeline", str(path), "hello"])
    assert result.exit_code == 2
    assert message in result.stderr.replace("\n", " ")


def test_each_local_stage_judges_a_repeat_once(tmp_path, tiny_model) -> None:
    """With the verdict caches `guard classify --pipeline` sets (unless --no-cache), a repeat
    reaching a stage gets that stage's first verdict with its own id; the rows equal the ones
    judged without caches."""
    from guardcli.core.records import Record
    from guardcli.jobs.pipeline import load_pipeline

    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "stages:\n"
        f"  - {{name: first, model: {tiny_model}, variant: fp32, threshold: 1.0}}\n"
        f"  - {{name: second, model: {tiny_model}, variant: int8, threshold: 1.0}}\n"
    )
    texts = ["a lighthouse", "bread", "a lighthouse", "a kite", "bread", "a lighthouse"]
    records = [Record(id=f"r{i}", text=t, line=i + 1) for i, t in enumerate(texts)]
    plain = load_pipeline(path).classify_records(records)
    cached = load_pipeline(path)
    cached.use_verdict_caches(16.0)
    got = cached.classify_records(records)
    assert [v.to_dict() for v in got] == [v.to_dict() for v in plain]
    assert [v.id for v in got] == [r.id for r in records]
    for stage in cached.stages:  # nothing flags at threshold 1.0: both stages see every record
        assert stage.guard is not None and stage.guard.verdict_cache is not None
        stats = stage.guard.verdict_cache.stats()
        assert (stats.hits, stats.misses) == (3, 3), stage.name


def test_no_cache_reaches_the_pipelines_stages(runner, tmp_path, tiny_model, monkeypatch) -> None:
    from guardcli.jobs import pipeline

    calls: list[int] = []
    real = pipeline.Pipeline.use_verdict_caches
    monkeypatch.setattr(
        pipeline.Pipeline,
        "use_verdict_caches",
        lambda self, n: (calls.append(n), real(self, n))[1],
    )
    path = tmp_path / "pipeline.yaml"
    path.write_text(f"stages:\n  - {{name: only, model: {tiny_model}, variant: fp32}}\n")
    for flags, want in (([], [64.0]), (["--no-cache"], [])):
        calls.clear()
        result = invoke(
            runner,
            ["classify", "--pipeline", str(path), "-f", "jsonl", *flags, "-"],
            input="a lighthouse\na lighthouse\n",
        )
        assert result.exit_code in (0, 1), result.stderr
        assert calls == want, flags
