"""The Guard base class: owns prepare -> tokenize -> bucket -> run -> postprocess -> reorder.

A family says only how a record becomes model text (`render`) and how a batch of token ids
becomes judgements (`score_batch`); batching, truncation and ordering are written once, here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from guardcli.core.batching import DEFAULT_BATCH_SIZE, DEFAULT_TOKEN_BUDGET, plan_batches
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.records import ReadOptions, as_records, chunked
from guardcli.core.resolve import ResolvedModel
from guardcli.core.tokenize import Encoded, TextTokenizer
from guardcli.core.verdict_cache import VerdictCache
from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.families.cached import classify_cached
from guardcli.families.judgement import (  # noqa: F401 - importable from here
    CHARS_PER_TOKEN,
    Judgement,
    cut_record,
    finite_or_error,
    unreadable,
)


class Guard(ABC):
    family: ClassVar[str]
    # The side the tokenizer truncates (and a long text is cut) on: "right" keeps the start,
    # "left" keeps the end (dialogue families judge the latest turns).
    truncation_side: ClassVar[str] = "right"
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
    # The dataclass of the family's own options, when it has typed ones: a GuardSpec may carry
    # an instance (GuardSpec(options=...)), whose fields load_guard passes as keywords.
    options_type: ClassVar[type | None] = None
    # Set one (VerdictCache) to judge each distinct input once: `guard classify` does per run,
    # `guard serve` across requests.
    verdict_cache: VerdictCache | None = None

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
            # Named as the keyword and as the command-line flag it comes from.
            names = ", ".join(f"{k} (--{k.replace('_', '-')})" for k in sorted(options))
            raise GuardError(
                f"{names} does not apply to the {self.family} family.",
                hint="Drop it; each option's help in `guard classify --help` names the "
                "families it is for.",
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
        return self.judge_records(as_records(items, read or ReadOptions()))

    def classify_stream(
        self,
        records: Iterable[Record],
        *,
        chunk_size: int = 256,
        max_wait: float = 0.05,
    ) -> Iterator[list[Verdict]]:
        """Verdicts chunk by chunk, in input order, as records arrive."""
        for chunk in chunked(records, max_items=chunk_size, max_wait=max_wait):
            yield self.judge_records(chunk)

    def judge_records(
        self, records: list[Record], on_batch: Callable[[int], None] | None = None
    ) -> list[Verdict]:
        """`classify_records` through `verdict_cache` when one is set: each distinct input
        judged once (families/cached.py)."""
        if self.verdict_cache is None:
            return self.classify_records(records, on_batch)
        return classify_cached(self, records, self.verdict_cache, on_batch)

    def classify_records(
        self, records: list[Record], on_batch: Callable[[int], None] | None = None
    ) -> list[Verdict]:
        """One verdict per record, in order. Whatever goes wrong reading, preparing or
        tokenizing one record is that record's error: its neighbours are still judged."""
        verdicts: list[Verdict | None] = [None] * len(records)
        encoded = self._encode_records(records)
        todo: list[int] = []
        ready: list[Encoded] = []
        for i, (record, enc) in enumerate(zip(records, encoded, strict=True)):
            if isinstance(enc, RecordError):
                verdicts[i] = Verdict.failed(record, enc, fail_closed=self.fail_closed)
            else:
                enc.record = record
                todo.append(i)
                ready.append(enc)
        if todo:
            lengths = [len(e.ids) for e in ready]
            for batch in plan_batches(
                lengths, batch_size=self.batch_size, token_budget=self.token_budget
            ):
                judgements = self.score_batch([ready[j] for j in batch])
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
                        verdicts[todo[j]] = self._verdict(record, judgement, ready[j])
                if on_batch:
                    on_batch(len(batch))
        return [v for v in verdicts if v is not None]

    @property
    def char_limit(self) -> int:
        """Characters of one text (or message) tokenized at first; see CHARS_PER_TOKEN."""
        return max(self.max_length, 1) * CHARS_PER_TOKEN

    def _encode_records(self, records: list[Record]) -> list[Encoded | RecordError]:
        """Prepare and tokenize a chunk: one batch call for the short records, a bounded cut
        for the long ones, and one record at a time when the batch call fails."""
        out: list[Encoded | RecordError | None] = [None] * len(records)
        short: list[int] = []
        texts: list[str] = []
        cut: list[bool] = []
        for i, record in enumerate(records):
            if record.error is not None:
                out[i] = record.error
                continue
            try:
                if cut_record(record, self.char_limit, self.truncation_side) is not None:
                    out[i] = self._encode_long(record)
                    continue
                text, shortened = self.prepare(record)
            except RecordError as err:
                out[i] = err
                continue
            except GuardError:
                raise
            except Exception as exc:
                out[i] = unreadable(record, exc)
                continue
            short.append(i)
            texts.append(text)
            cut.append(shortened)
        if texts:
            encoded = self._encode_each(texts, records, short)
            for i, enc, shortened in zip(short, encoded, cut, strict=True):
                if isinstance(enc, Encoded):
                    enc.truncated = enc.truncated or shortened
                out[i] = enc
        assert all(e is not None for e in out)
        return out  # type: ignore[return-value]

    def _encode_each(
        self, texts: list[str], records: list[Record], index: list[int]
    ) -> list[Encoded | RecordError]:
        """`encode` in one call; when that fails, one text at a time, so only the text the
        tokenizer cannot take becomes an error."""
        try:
            return list(self.encode(texts))
        except GuardError:
            raise
        except Exception:
            pass
        out: list[Encoded | RecordError] = []
        for text, i in zip(texts, index, strict=True):
            try:
                out.append(self.encode([text])[0])
            except GuardError:
                raise
            except Exception as exc:
                out.append(unreadable(records[i], exc))
        return out

    def _encode_at(self, record: Record, limit: int) -> tuple[Encoded, bool]:
        """(the encoding of `record` cut to `limit` characters, whether anything was cut)."""
        cut = cut_record(record, limit, self.truncation_side)
        text, shortened = self.prepare(cut or record)
        enc = self.encode([text])[0]
        enc.truncated = enc.truncated or shortened
        return enc, cut is not None

    def _encode_long(self, record: Record) -> Encoded:
        """Tokens of a record longer than `char_limit`, equal to those of its whole text after
        the tokenizer's truncation, without tokenizing the whole text.

        Cutting at `limit` characters can only change tokens near the cut. When the tokens kept
        from a cut at `limit` equal those kept from a cut at `2 * limit`, the cut lay beyond the
        kept tokens' reach; else the cut is doubled, up to the whole text."""
        limit = self.char_limit
        first, _ = self._encode_at(record, limit)
        while True:
            second, was_cut = self._encode_at(record, 2 * limit)
            if not was_cut:
                return second
            if first.truncated and first.ids == second.ids:
                first.truncated = True
                return first
            first, limit = second, 2 * limit

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
