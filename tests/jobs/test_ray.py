"""`guard classify --engine ray`: the same verdicts as local classify, nothing lost.

Ray starts once per module (it is slow to start); the end-to-end runs use a local Ray with 2
workers on the tiny model and compare, by id, with the local path on the same input.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from guardcli import load_guard
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.records import ReadOptions, is_blank
from guardcli.jobs.classify import Summary
from guardcli.jobs.ray import GuardSpec, ScaleResult, count_lines, split_lines, worker_plan

from ..conftest import SAMPLES, invoke


def samples() -> list[dict]:
    return [json.loads(line) for line in (SAMPLES / "labelled.jsonl").open()][:60]


def jsonl_input() -> bytes:
    """Good records, every kind of bad one, plain text, and records with and without ids."""
    lines = [json.dumps({"id": r["id"], "text": r["text"], "lang": r["lang"]}) for r in samples()]
    lines[3] = '{"id": "broken", "text": '  # invalid_json: id falls back to the line number
    lines[7] = json.dumps({"id": "nofield", "body": "x"})
    lines[11] = ""
    lines[13] = "a plain text line, not JSON"
    lines[17] = json.dumps({"text": "a record without an id"})
    lines[19] = json.dumps({"id": 42, "text": "an integer id", "lang": "en"})
    lines[23] = json.dumps({"id": "num", "text": 7})
    return ("\n".join(lines) + "\n").encode() + b"\xff\xfe not utf-8\n"


def by_id(rows: list[dict]) -> dict[str, dict]:
    out = {str(r["id"]): r for r in rows}
    assert len(out) == len(rows), "ids must be unique to join"
    return out


def assert_same_verdicts(local: dict[str, dict], scaled: dict[str, dict]) -> None:
    assert scaled.keys() == local.keys()
    for rid, want in local.items():
        got = dict(scaled[rid])
        if want.get("score") is not None:
            # batches are composed differently: padded scores agree to ~1e-6, not bit for bit
            assert got.pop("score") == pytest.approx(want["score"], abs=1e-5), rid
            want = {k: v for k, v in want.items() if k != "score"}
        assert got == want, rid


# ----------------------------------------------------------------------------- no Ray needed


@pytest.mark.parametrize(
    ("cpus", "workers", "per_worker", "plan"),
    [
        (2, None, None, (1, 1.0)),  # one CPU left for reading and writing
        (2, 2, None, (2, 0.5)),  # the measured hang: 2 actors x 1 CPU on 2 CPUs
        (8, None, None, (7, 1.0)),
        (8, None, 0.5, (14, 0.5)),
        (1, None, None, (1, 0.5)),
        (16, 3, 2.0, (3, 2.0)),
    ],
)
def test_worker_plan_leaves_room_for_io(cpus, workers, per_worker, plan) -> None:
    assert worker_plan(cpus, workers, per_worker) == plan
    if workers is None or per_worker is None:
        n, each = worker_plan(cpus, workers, per_worker)
        assert n * each < cpus


@pytest.mark.parametrize(
    "data", [b"", b"a\nb\n", b"a\nb", b"a\r\nb\r\n\n", b"\n\n", b"x\rstill one line\n"]
)
def test_split_lines_matches_a_binary_stream(data: bytes, tmp_path: Path) -> None:
    assert split_lines(data) == [line.rstrip(b"\n") for line in io.BytesIO(data)]
    (tmp_path / "f").write_bytes(data)
    non_blank = [raw for n, raw in enumerate(split_lines(data), start=1) if not is_blank(raw, n)]
    assert count_lines(str(tmp_path / "f")) == len(non_blank)  # blank lines are no records


def test_missing_records_fail_the_run() -> None:
    result = ScaleResult(Summary(records=2), records_in=3, records_out=2, output="out/")
    with pytest.raises(GuardError) as err:
        result.check()
    assert err.value.code == ExitCode.MODEL
    assert err.value.message == "3 records in but 2 written to out/."
    ScaleResult(Summary(records=3), records_in=3, records_out=3, output="out/").check()


def test_inputs_expand_from_files_folders_and_globs(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    from guardcli.jobs.ray import expand_inputs, input_format

    for name in ("b.jsonl", "a.jsonl", "c.parquet", "sub/d.jsonl", "_SUCCESS"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    jsonl = [str(tmp_path / n) for n in ("a.jsonl", "b.jsonl")]
    assert expand_inputs(str(tmp_path / "*.jsonl")) == jsonl
    assert expand_inputs(jsonl[1]) == jsonl[1:]
    folder = expand_inputs(str(tmp_path))
    assert folder == sorted([*jsonl, str(tmp_path / "c.parquet"), str(tmp_path / "sub/d.jsonl")])
    assert input_format(jsonl) == "jsonl"
    with pytest.raises(GuardError, match="mixes Parquet and JSONL"):
        input_format(folder)
    with pytest.raises(GuardError, match="No input files match"):
        expand_inputs(str(tmp_path / "*.csv"))


def test_cli_keeps_engines_apart(runner, tmp_path: Path) -> None:
    result = invoke(runner, ["classify", "--workers", "2", "--output", "x", "hello"])
    assert result.exit_code == 2
    assert result.stderr == "Error: --output, --workers only apply to --engine ray.\n"
    result = invoke(runner, ["classify", "--engine", "ray", "--input", "in.jsonl"])
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --engine ray needs --input PATH_OR_GLOB and --output")
    result = invoke(runner, ["classify", "--engine", "spark", "hello"])
    assert result.stderr.startswith("Error: Unknown engine 'spark'.")


# ----------------------------------------------------------------------------- a local Ray


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("pyarrow")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_gives_the_local_verdicts_bad_records_included(
    ray_cluster, runner, tiny_model: Path, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl_input())
    common = ["classify", "--model", str(tiny_model), "--variant", "fp32", "--keep", "lang"]
    local = invoke(runner, [*common, "-q", "-f", "jsonl", "--input", str(path)])
    out = tmp_path / "verdicts"
    scaled = invoke(
        runner, [*common, "--engine", "ray", "--workers", "2", "-i", str(path), "-o", str(out)]
    )
    assert scaled.exit_code == local.exit_code == ExitCode.INPUT  # bad records: exit 2, as locally
    local_rows = [json.loads(line) for line in local.stdout.splitlines()]
    shard_rows = [
        json.loads(line) for shard in sorted(out.glob("part-*.jsonl")) for line in shard.open()
    ]
    blank = 1  # line 12: skipped by both engines
    assert len(shard_rows) == len(local_rows) == len(path.read_bytes().splitlines()) - blank
    assert_same_verdicts(by_id(local_rows), by_id(shard_rows))
    errors = {r["error"]["type"] for r in shard_rows if "error" in r}
    assert errors == {"invalid_json", "missing_field", "bad_field", "invalid_utf8"}
    assert scaled.stdout == ""  # shards only; stdout stays empty
    summary = scaled.stderr.strip().splitlines()[-1]
    flagged = sum(bool(r["flagged"]) for r in local_rows)
    assert summary.startswith(f"{len(local_rows)} records, {flagged} flagged, 4 errors")
    assert "2 workers x 0.5 CPU" in summary


@pytest.mark.slow
def test_ray_reads_parquet_globs_and_writes_parquet(
    ray_cluster, tiny_model: Path, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from guardcli.jobs.ray import classify_with_ray

    rows = [{"id": r["id"], "text": r["text"], "lang": r["lang"]} for r in samples()]
    rows[5]["text"] = ""  # a bad record in Parquet too
    rows.append({"id": "dialogue", "text": None, "lang": "en"})
    for part in (0, 1):
        pq.write_table(pa.Table.from_pylist(rows[part::2]), tmp_path / f"in-{part}.parquet")
    read = ReadOptions(keep=("lang",))
    result = classify_with_ray(
        str(tmp_path / "in-*.parquet"),
        str(tmp_path / "out"),
        spec=GuardSpec(str(tiny_model), variant="fp32"),
        read=read,
        output_format="parquet",
        workers=2,
        progress=False,
    )
    result.check()
    assert result.records_in == result.records_out == len(rows)
    table = pq.read_table(tmp_path / "out")
    scaled = by_id(table.to_pylist())
    local = load_guard(tiny_model, variant="fp32").classify(rows, read=read)
    want = {}
    for v in local:
        row = v.to_dict()
        if "error" in row:
            row["error"]["line"] = None  # Parquet has no lines
        want[str(v.id)] = row
    # Parquet rows carry every column; compare the ones the local verdict has.
    got = {rid: {k: r[k] for k in want[rid]} for rid, r in scaled.items() if rid in want}
    assert_same_verdicts(want, got)
    assert scaled["dialogue"]["error"]["type"] == "bad_field"
    assert result.summary.errors == 2


@pytest.mark.slow
def test_ray_takes_the_encoder_options(ray_cluster, runner, tmp_path: Path) -> None:
    """--long segments and --unsafe-labels reach every worker's guard (hf-seqcls)."""
    from guardcli.families.hf_seqcls.synth import synth_hf_seqcls

    from .. import model_store

    folder = model_store.cached_build(
        "hf-seqcls-bert-tiny",
        "guardcli.families.hf_seqcls.synth",
        "synth_hf_seqcls(arch='bert')",
        lambda out: synth_hf_seqcls(out, arch="bert"),
        tmp_path / "hf-seqcls-bert-tiny",
    )
    path = tmp_path / "in.jsonl"
    texts = ["tea by the river " * 60, "a bridge at dusk", "lighthouse keeper " * 90]
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    common = ["classify", "-m", str(folder), "--variant", "fp32", "--max-length", "32"]
    options = ["--long", "segments", "--unsafe-labels", "0"]
    out = tmp_path / "verdicts"
    result = invoke(
        runner,
        [*common, *options, "--engine", "ray", "--workers", "2", "-i", str(path), "-o", str(out)],
    )
    assert result.exit_code in (0, 1), result.stderr
    rows = by_id([json.loads(line) for s in sorted(out.glob("part-*.jsonl")) for line in s.open()])
    guard = load_guard(folder, variant="fp32", max_length=32, long="segments", unsafe_labels="0")
    for i, v in enumerate(guard.classify(texts)):
        assert rows[str(i)]["score"] == pytest.approx(v.score, abs=1e-6)
        assert rows[str(i)].get("segment") == v.segment
    assert any(v.segment and v.segment["count"] > 1 for v in guard.classify(texts))


@pytest.mark.slow
def test_ray_takes_the_policy(ray_cluster, runner, tmp_path: Path) -> None:
    """--policy reaches every worker's guard (llama-guard): the tiny model's S1 answer is not a
    category of a C1-only policy, so that record is an error, as it is locally."""
    from guardcli.families.llama_guard.synth import MARKER_WORD, synth_llama_guard

    from .. import model_store

    folder = model_store.cached_build(
        "llama-guard-tiny",
        "guardcli.families.llama_guard.synth",
        "synth_llama_guard(size='tiny', seed=0)",
        lambda out: synth_llama_guard(out, size="tiny", seed=0),
        tmp_path / "llama-guard-tiny",
    )
    policy = tmp_path / "c1.toml"
    policy.write_text('[[categories]]\ncode = "C1"\nname = "Discount Codes"\n')
    path = tmp_path / "in.jsonl"
    texts = ["How do I bake bread?", f"a {MARKER_WORD} lighthouse please"]
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    out = tmp_path / "verdicts"
    args = ["classify", "-m", str(folder), "--policy", str(policy), "--engine", "ray"]
    result = invoke(runner, [*args, "--workers", "2", "-i", str(path), "-o", str(out)])
    assert result.exit_code == 2, result.stderr  # a record could not be judged
    rows = by_id([json.loads(line) for s in sorted(out.glob("part-*.jsonl")) for line in s.open()])
    assert rows["0"]["flagged"] is False
    assert "is not a category of this policy (C1)" in rows["1"]["error"]["message"]


def test_a_worker_judges_a_repeat_once_with_its_cache(tiny_model: Path) -> None:
    """The Ray worker (`stages.Classifier`, called here without Ray) with the cache that
    `guard classify --engine ray` gives it unless --no-cache: the same verdict rows as without,
    each repeat from the cache."""
    pa = pytest.importorskip("pyarrow")
    from guardcli.jobs.ray.stages import Classifier

    texts = ["a lighthouse", "bread", "a lighthouse", "a kite", "bread"]
    rows = [
        {"raw": json.dumps({"id": f"r{i}", "text": t}).encode(), "line": i + 1, "file": "in.jsonl"}
        for i, t in enumerate(texts)
    ]
    spec = GuardSpec(model=str(tiny_model), variant="fp32")
    out = {}
    for cache_mb in (None, 16.0):
        worker = Classifier(spec, ReadOptions(), "jsonl", False, cache_mb=cache_mb)
        out[cache_mb] = worker(pa.Table.from_pylist(rows))["verdict"]
        cache = worker.guard.verdict_cache
        assert (cache is None) == (cache_mb is None)
        if cache is not None:
            assert cache.stats().hits == 2
    assert out[16.0] == out[None]
    got = [json.loads(v) for v in out[16.0]]
    assert [v["id"] for v in got] == [f"r{i}" for i in range(5)]
    assert all(v.get("error") is None and v["score"] is not None for v in got)
