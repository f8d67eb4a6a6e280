"""Escalation pipelines (OpenCC's design): cheap screens in order, then an optional judge.

A pipeline file (YAML):

    name: opencc                 # optional; the verdicts' `model`
    default_action: block        # block | annotate (OpenCC's config semantics)
    stages:
      - name: jailbreak
        model: opencc-jb         # a catalog name, or a folder (relative to this file)
      - name: moderation
        model: opencc-cm
        thresholds: cm.json      # optional: per-category thresholds (relative to this file)
      - name: judge
        role: judge
        model: qwen3guard-gen
        endpoint: http://localhost:8000/v1   # a remote OpenAI-compatible judge

A record goes through the screens in order and leaves at the first one that flags it; a flagged
record goes to the judge when there is one. The decision:
- allow: no screen flagged it, or the judge cleared it;
- block: flagged (by a screen when there is no judge, else by the judge) and default_action is
  block;
- escalate: flagged and default_action is annotate (it passes on, annotated with the stage
  verdicts), or the judge could not give a verdict (say its endpoint stayed down after its
  retries: the stage answers with a `judge_unavailable` error and the record is escalated).
`flagged` is true unless the decision is allow, so guard's exit codes hold: 0 all allowed,
1 something blocked or escalated, 2 a bad record (an error outranks a flag), 3 a model error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardcli.core.errors import ExitCode, GuardError, missing_extra
from guardcli.core.records import chunked
from guardcli.core.spec import GuardSpec
from guardcli.core.thresholds import parse_threshold
from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.families import Guard
from guardcli.families.loader import load_guard

ACTIONS = ("block", "annotate")
ROLES = ("screen", "judge")
STAGE_KEYS = {
    "name",
    "model",
    "role",
    "variant",
    "threshold",
    "thresholds",
    "endpoint",
    "served_model",
    "long",
    "unsafe_labels",
    "policy",
}
FILE_HINT = (
    "A pipeline file is YAML with `stages:` (a list of {name, model, role: screen|judge, "
    "variant, threshold, thresholds, endpoint, served_model, long, unsafe_labels, policy}) and "
    "optionally `name:` and "
    "`default_action: block|annotate`."
)


@dataclass
class Stage:
    name: str
    model: str
    role: str = "screen"
    guard: Guard | None = None
    endpoint: str | None = None
    spec: GuardSpec | None = None  # what the stage's guard was loaded from

    def judge_records(self, records: list[Record]) -> list[Verdict]:
        """The judge's verdicts; a judge that fails (an endpoint down after its retries)
        escalates the records instead of failing the run."""
        assert self.guard is not None
        try:
            return self.guard.judge_records(records)
        except GuardError as err:
            where = f" at {self.endpoint}" if self.endpoint else ""
            reason = RecordError(
                "judge_unavailable",
                f"the judge {self.model}{where} failed ({err.message}); the record is escalated",
            )
            return [Verdict.failed(r, reason) for r in records]


@dataclass
class Pipeline:
    name: str
    stages: list[Stage]
    default_action: str = "block"
    fail_closed: bool = False
    variant: str = field(default="pipeline")

    def use_verdict_caches(self, mib: float) -> None:
        """A verdict cache of `mib` MiB for each stage that runs a local model: a repeat
        reaching a stage gets that stage's first verdict. An endpoint's stage judges every
        record (its answers are not known to be exact repeats)."""
        from guardcli.core.verdict_cache import VerdictCache

        for stage in self.stages:
            if stage.guard is not None and not stage.endpoint:
                stage.guard.verdict_cache = VerdictCache.of_mib(mib)

    @property
    def screens(self) -> list[Stage]:
        return [s for s in self.stages if s.role == "screen"]

    @property
    def judge(self) -> Stage | None:
        return next((s for s in self.stages if s.role == "judge"), None)

    def classify_stream(
        self, records: Iterable[Record], *, chunk_size: int = 256, max_wait: float = 0.05
    ) -> Iterator[list[Verdict]]:
        for chunk in chunked(records, max_items=chunk_size, max_wait=max_wait):
            yield self.classify_records(chunk)

    def classify_records(self, records: list[Record]) -> list[Verdict]:
        stages: list[dict[str, Any]] = [{} for _ in records]
        done: dict[int, Verdict] = {}
        flagged: list[int] = []
        pending = []
        for i, record in enumerate(records):
            if record.error is not None:
                done[i] = Verdict.failed(record, record.error, fail_closed=self.fail_closed)
            else:
                pending.append(i)
        last: dict[int, Verdict] = {}
        for stage in self.screens:
            if not pending:
                break
            assert stage.guard is not None
            verdicts = stage.guard.judge_records([records[i] for i in pending])
            still = []
            for i, v in zip(pending, verdicts, strict=True):
                stages[i][stage.name] = _stage_row(v)
                last[i] = v
                if v.error is not None:
                    done[i] = Verdict.failed(records[i], v.error, fail_closed=self.fail_closed)
                elif v.flagged:
                    flagged.append(i)
                else:
                    still.append(i)
            pending = still
        for i in pending:
            done[i] = self._decided(records[i], "allow", last.get(i), stages[i])
        judge = self.judge
        if judge is None:
            for i in flagged:
                done[i] = self._decided(records[i], self._flag_decision(), last[i], stages[i])
        elif flagged:
            verdicts = judge.judge_records([records[i] for i in flagged])
            for i, v in zip(flagged, verdicts, strict=True):
                stages[i][judge.name] = _stage_row(v)
                if v.error is not None:
                    decision, deciding = "escalate", last[i]
                else:
                    decision = self._flag_decision() if v.flagged else "allow"
                    deciding = v
                done[i] = self._decided(records[i], decision, deciding, stages[i])
        return [done[i] for i in range(len(records))]

    def _flag_decision(self) -> str:
        return "block" if self.default_action == "block" else "escalate"

    def _decided(
        self, record: Record, decision: str, deciding: Verdict | None, stages: dict[str, Any]
    ) -> Verdict:
        return Verdict(
            id=record.id,
            flagged=decision != "allow",
            score=None if deciding is None else deciding.score,
            label=decision,
            categories=None if deciding is None else deciding.categories,
            model=self.name,
            variant=self.variant,
            tokens=None if deciding is None else deciding.tokens,
            truncated=None if deciding is None else deciding.truncated,
            kept={"decision": decision, "stages": stages, **record.kept},
        )


def _stage_row(v: Verdict) -> dict[str, Any]:
    row = v.to_dict()
    row.pop("id", None)
    for key in v.kept:
        row.pop(key, None)
    return row


def _bad(path: Path, message: str) -> GuardError:
    return GuardError(f"{path}: {message}", hint=FILE_HINT, code=ExitCode.INPUT)


def read_pipeline_file(path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as exc:
        raise missing_extra("pipeline", "Reading a pipeline file (PyYAML)") from exc
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GuardError(f"Cannot read {path}: {exc.strerror}.", code=ExitCode.INPUT) from None
    except yaml.YAMLError as exc:
        raise _bad(path, f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _bad(path, "the file must hold a mapping.")
    return data


def _model_ref(value: str, base: Path) -> str:
    """A folder relative to the pipeline file, or a catalog name as is."""
    candidate = (base / value).expanduser()
    if value.startswith((".", "/", "~")) or candidate.is_dir():
        return str(candidate if not Path(value).expanduser().is_absolute() else value)
    return value


def load_pipeline(
    path: str | Path,
    spec: GuardSpec | None = None,
    *,
    batch_size: int | None = None,
    threads: int | None = None,
    fail_closed: bool = False,
    cache_dir: str | None = None,
) -> Pipeline:
    """Read a pipeline file and load each stage's model (a judge may be remote: `endpoint`).

    `spec` carries the options every stage shares (batch_size, threads, fail_closed, cache_dir;
    the keywords are the same, for callers without one); each stage's model, variant and
    thresholds come from the file, and the stage keeps its own GuardSpec."""
    shared = spec or GuardSpec(
        batch_size=batch_size, threads=threads, fail_closed=fail_closed, cache_dir=cache_dir
    )
    # Screens take the shared batching and threads; a remote judge only the cache. The pipeline,
    # not its stages, applies fail_closed.
    screen_base = GuardSpec(
        batch_size=shared.batch_size, threads=shared.threads, cache_dir=shared.cache_dir
    )
    judge_base = GuardSpec(cache_dir=shared.cache_dir)
    path = Path(path).expanduser()
    data = read_pipeline_file(path)
    unknown = sorted(set(data) - {"name", "default_action", "stages"})
    if unknown:
        raise _bad(path, f"unknown key(s): {', '.join(unknown)}.")
    action = data.get("default_action", "block")
    if action not in ACTIONS:
        raise _bad(path, f"default_action must be block or annotate, not {action!r}.")
    specs = data.get("stages")
    if not isinstance(specs, list) or not specs:
        raise _bad(path, "`stages` must be a non-empty list.")
    # Every stage's threshold is checked before any model loads.
    for n, entry in enumerate(specs, start=1):
        if isinstance(entry, dict) and entry.get("threshold") is not None:
            entry["threshold"] = parse_threshold(
                entry["threshold"], f"{path}: stage {n}'s threshold"
            )
    stages: list[Stage] = []
    for n, entry in enumerate(specs, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("model"), str):
            raise _bad(path, f"stage {n} needs `model: NAME_OR_DIR`.")
        if extra := sorted(set(entry) - STAGE_KEYS):
            raise _bad(path, f"stage {n} has unknown key(s): {', '.join(extra)}.")
        role = entry.get("role", "screen")
        if role not in ROLES:
            raise _bad(path, f"stage {n}: role must be screen or judge, not {role!r}.")
        name = str(entry.get("name") or entry["model"])
        if any(s.name == name for s in stages):
            raise _bad(path, f"two stages are named {name!r}.")
        stage = Stage(name=name, model=entry["model"], role=role, endpoint=entry.get("endpoint"))
        if role == "judge" and any(s.role == "judge" for s in stages):
            raise _bad(path, "only one stage can be the judge.")
        if role == "screen" and any(s.role == "judge" for s in stages):
            raise _bad(path, "the judge must be the last stage.")
        if stage.endpoint is not None and role != "judge":
            raise _bad(path, f"stage {name!r}: only the judge can be remote (endpoint).")
        if stage.endpoint is None:
            thresholds = entry.get("thresholds")
            if thresholds is not None:
                thresholds = str((path.parent / str(thresholds)).expanduser())
            options = {k: entry[k] for k in ("long", "unsafe_labels") if k in entry}
            if "policy" in entry:  # a file, relative to the pipeline file like thresholds
                options["policy"] = str((path.parent / str(entry["policy"])).expanduser())
            stage.spec = dataclasses.replace(
                screen_base,
                model=_model_ref(entry["model"], path.parent),
                variant=str(entry.get("variant", "auto")),
                threshold=entry.get("threshold"),
                thresholds=thresholds,
                options=options,
            )
            stage.guard = load_guard(stage.spec)
        stages.append(stage)
    if not any(s.role == "screen" for s in stages):
        raise _bad(path, "a pipeline needs at least one screen stage before the judge.")
    for stage, entry in zip(stages, specs, strict=True):
        if stage.endpoint is not None:
            # A generative judge served by vLLM/SGLang or a hosted OpenAI-compatible API.
            stage.spec = dataclasses.replace(
                judge_base,
                model=_model_ref(entry["model"], path.parent),
                endpoint=stage.endpoint,
                threshold=entry.get("threshold"),
                options={"served_model": entry["served_model"]}
                if entry.get("served_model")
                else {},
            )
            stage.guard = load_guard(stage.spec)
    return Pipeline(str(data.get("name") or path.stem), stages, action, shared.fail_closed)
