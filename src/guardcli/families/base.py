"""The Guard base class: owns prepare -> tokenize -> bucket -> run -> postprocess -> reorder.

A family says only how a record becomes model text (`render`) and how a batch of token ids
becomes judgements (`score_batch`); batching, truncation and ordering are written once, here.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from ..batching import DEFAULT_BATCH_SIZE, DEFAULT_TOKEN_BUDGET, plan_batches
from ..errors import ExitCode, GuardError
from ..hub import ResolvedModel
from ..records import ReadOptions, as_records, chunked
from ..tokenize import Encoded, TextTokenizer
from ..verdict import Record, RecordError, Verdict


@dataclass
class Judgement:
    """What a family says about one input; the base class adds id, model and bookkeeping."""

    score: float | None
    flagged: bool
    label: str | None = None
    categories: dict[str, Any] | list[str] | None = None
    severity: str | None = None
    refusal: bool | None = None


def _non_finite(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    try:  # numpy scalars
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def finite_or_error(judgement: Judgement) -> Judgement | RecordError:
    """A judgement whose score or category scores are NaN or infinite is no judgement: the
    model is broken, and a broken model must never say "safe" (fail closed)."""
    if _non_finite(judgement.score) or _non_finite(judgement.categories):
        return RecordError(
            "non_finite_score",
            "the model produced a score that is not a finite number (NaN or infinity); "
            "the model or its variant is broken",
        )
    return judgement


class Guard(ABC):
    family: ClassVar[str]
    # True for families that judge a dialogue (`record.messages`): dialogue intent, response
    # moderation. `guard serve` then hands them LiteLLM's structured_messages, not bare texts.
    accepts_messages: ClassVar[bool] = False
    # Families with per-category thresholds (multilabel heads) set this; others reject
    # `category_thresholds`.
    has_categories: ClassVar[bool] = False
    # Families that pick their own runtime map `--backend` names to theirs; the others run on
    # the variant's backend (onnxruntime or OpenVINO).
    runtimes: ClassVar[dict[str, str]] = {}
    # Ways of running one loaded model that `guard bench` times as rows of their own (generative
    # guards: greedy generation and score mode); `use_mode` switches between them.
    modes: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        model: ResolvedModel,
        *,
        threshold: float | None = None,
        max_length: int | None = None,
        batch_size: int | None = None,
        token_budget: int | None = None,
        threads: int | None = None,
        fail_closed: bool = False,
        category_thresholds: dict[str, float] | None = None,
        one_shot: bool = False,
        **options: Any,
    ):
        if options:
            raise GuardError(
                f"{', '.join(sorted(options))} does not apply to the {self.family} family.",
                code=ExitCode.INPUT,
            )
        if category_thresholds is not None and not self.has_categories:
            raise GuardError(
                f"Model '{model.name}' (family {self.family}) has no categories, so "
                "per-category thresholds do not apply.",
                hint="Use --threshold, or --thresholds with a multilabel model such as opencc-cm.",
                code=ExitCode.INPUT,
            )
        self.category_thresholds = category_thresholds
        self.model = model
        self.name = model.name
        self.variant = model.variant
        self.threshold = model.threshold if threshold is None else threshold
        self.max_length = max_length or model.max_length
        self.batch_size = batch_size or DEFAULT_BATCH_SIZE
        self.token_budget = max(token_budget or DEFAULT_TOKEN_BUDGET, self.max_length)
        self.threads = threads
        self.fail_closed = fail_closed
        # A short run (a few prompts from the command line): runtimes skip load-time work that
        # only pays off over many batches.
        self.one_shot = one_shot

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer(self.model.path, self.max_length)

    def render(self, record: Record) -> str:
        """The exact text the model receives for `record` (raw text by default)."""
        if record.text is None:
            raise RecordError("missing_field", "record has no text", record.line)
        return record.text

    def prepare(self, record: Record) -> tuple[str, bool]:
        """(model text, whether the family shortened it to fit). A family that trims part of
        its input itself (a dialogue context, from the left) says so here; plain truncation by
        the tokenizer is counted by `encode`."""
        return self.render(record), False

    def encode(self, texts: list[str]) -> list[Encoded]:
        """Token ids of prepared texts (the tokenizer's truncation side is the family's; a remote
        backend may not need them)."""
        return self.tokenizer.encode(texts)

    @property
    def verdict_threshold(self) -> float | None:
        """The `threshold` a verdict reports; None where flags come from per-category
        thresholds."""
        return self.threshold

    def use_mode(self, mode: str) -> None:
        """Run as `mode`, one of `modes`, from now on."""
        raise GuardError(
            f"The {self.family} family has one way to run; {mode!r} does not apply.",
            code=ExitCode.INPUT,
        )

    def runtime_calls(self) -> list[tuple[Any, str]]:
        """Load the model and name the methods that run it, as (object, method name).

        `guard bench` times this call as the load time and wraps those methods to time the
        model alone (a method named `generate` returns each prompt's new token ids). A family
        that names none is timed by `score_batch`."""
        return []

    def weight_files(self) -> list[Path]:
        """The files that hold this variant's weights (their size on disk, for `guard bench`)."""
        return [self.model.graph]

    @abstractmethod
    def score_batch(self, batch: list[Encoded]) -> Sequence[Judgement | RecordError]:
        """Judge one batch of encoded inputs (already length-bucketed). A RecordError in place
        of a judgement makes that record an error record (e.g. unparsable model output)."""

    def classify(
        self, items: Iterable[str | dict[str, Any] | Record], *, read: ReadOptions | None = None
    ) -> list[Verdict]:
        """Judge strings, JSON-like dicts or Records; one Verdict per item, in order."""
        return self.classify_records(as_records(items, read or ReadOptions()))

    def classify_stream(
        self,
        records: Iterable[Record],
        *,
        chunk_size: int = 256,
        max_wait: float = 0.05,
    ) -> Iterator[list[Verdict]]:
        """Verdicts chunk by chunk, in input order, as records arrive."""
        for chunk in chunked(records, max_items=chunk_size, max_wait=max_wait):
            yield self.classify_records(chunk)

    def classify_records(
        self, records: list[Record], on_batch: Callable[[int], None] | None = None
    ) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(records)
        todo: list[int] = []
        texts: list[str] = []
        cut: list[bool] = []
        for i, record in enumerate(records):
            if record.error is not None:
                verdicts[i] = Verdict.failed(record, record.error, fail_closed=self.fail_closed)
                continue
            try:
                text, shortened = self.prepare(record)
            except RecordError as err:
                verdicts[i] = Verdict.failed(record, err, fail_closed=self.fail_closed)
                continue
            texts.append(text)
            cut.append(shortened)
            todo.append(i)
        if todo:
            encoded = self.encode(texts)
            for e, shortened in zip(encoded, cut, strict=True):
                e.truncated = e.truncated or shortened
            for j, enc in zip(todo, encoded, strict=True):
                enc.record = records[j]
            lengths = [len(e.ids) for e in encoded]
            for batch in plan_batches(
                lengths, batch_size=self.batch_size, token_budget=self.token_budget
            ):
                judgements = self.score_batch([encoded[j] for j in batch])
                for j, judgement in zip(batch, judgements, strict=True):
                    record = records[todo[j]]
                    if not isinstance(judgement, RecordError):
                        judgement = finite_or_error(judgement)
                    if isinstance(judgement, RecordError):
                        judgement.line = judgement.line or record.line
                        verdicts[todo[j]] = Verdict.failed(
                            record, judgement, fail_closed=self.fail_closed
                        )
                    else:
                        verdicts[todo[j]] = self._verdict(record, judgement, encoded[j])
                if on_batch:
                    on_batch(len(batch))
        return [v for v in verdicts if v is not None]

    def _verdict(self, record: Record, j: Judgement, enc: Encoded) -> Verdict:
        return Verdict(
            id=record.id,
            flagged=j.flagged,
            score=None if j.score is None else round(float(j.score), 6),
            threshold=self.verdict_threshold,
            label=j.label,
            categories=j.categories,
            severity=j.severity,
            refusal=j.refusal,
            model=self.name,
            variant=self.variant,
            tokens=len(enc.ids),
            truncated=enc.truncated,
            kept=record.kept,
        )
