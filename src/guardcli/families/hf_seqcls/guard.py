"""The hf-seqcls family: any transformers encoder `*ForSequenceClassification`, run as ONNX.

Scores follow the checkpoint's config (labels.py): softmax for single-label heads, sigmoid per
label for `multi_label_classification`; `id2label` names the labels, and the unsafe ones come from
`--unsafe-labels`, the catalog entry, or the default rule. `long="segments"` judges a text longer
than the window as overlapping windows and reports the worst one (segments.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from guardcli.core.batching import pad, plan_batches
from guardcli.core.catalog import load_catalog
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.resolve import ResolvedModel
from guardcli.core.thresholds import apply_thresholds
from guardcli.core.timings import record as record_time
from guardcli.core.tokenize import Encoded
from guardcli.core.verdicts import Record, RecordError, Verdict
from guardcli.families import register_family
from guardcli.families.base import Guard, Judgement, finite_or_error, unreadable
from guardcli.families.hf_seqcls.detect import NAME
from guardcli.families.hf_seqcls.labels import (
    LabelSpec,
    label_spec,
    parse_unsafe_labels,
    probabilities,
    unsafe_score,
)
from guardcli.families.hf_seqcls.options import HfSeqClsOptions
from guardcli.families.hf_seqcls.segments import Segmenter, Window, check_long
from guardcli.runtime import Session, open_session

# Unsafe labels of the catalog's hf-seqcls entries (by entry name). Prompt Guard 2 and
# protectai's model are binary (index 1); unbiased-toxic-roberta's identity labels (male,
# muslim, ...) describe who a text is about, not harm, so only the harm labels count (llm-guard's
# `_toxic_labels`).
CATALOG_UNSAFE_LABELS: dict[str, tuple[str, ...]] = {
    "llama-prompt-guard-2-86m": ("MALICIOUS",),
    "llama-prompt-guard-2-22m": ("MALICIOUS",),
    "deberta-v3-prompt-injection-v2": ("INJECTION",),
    "unbiased-toxic-roberta": (
        "toxicity",
        "severe_toxicity",
        "obscene",
        "threat",
        "insult",
        "identity_attack",
        "sexual_explicit",
    ),
}


@register_family
class HfSeqClsGuard(Guard):
    """Raw text in; P(unsafe) from the config's softmax/sigmoid over the unsafe labels."""

    family = NAME
    has_categories = True  # multi-label heads only; checked in __init__
    options_type = HfSeqClsOptions

    def __init__(
        self,
        model: ResolvedModel,
        *,
        long: str | None = None,
        unsafe_labels: str | Sequence[str] | None = None,
        overlap: int | None = None,
        category_thresholds: dict[str, float] | None = None,
        **kwargs: Any,
    ):
        super().__init__(model, category_thresholds=category_thresholds, **kwargs)
        self.long = check_long(long or "truncate")
        self.overlap = overlap
        self.labels = self._label_spec(parse_unsafe_labels(unsafe_labels))
        self.thresholds: dict[str, float] = {}
        if self.labels.multi_label:
            unsafe = [self.labels.names[i] for i in self.labels.unsafe]
            self.thresholds = apply_thresholds(
                dict.fromkeys(unsafe, self.threshold),
                category_thresholds or {},
                unsafe,
                "--thresholds",
            )
        elif category_thresholds is not None:
            raise GuardError(
                f"Model '{self.name}' is a single-label classifier with one threshold.",
                hint="Use --threshold; per-category thresholds apply to multi-label models.",
                code=ExitCode.INPUT,
            )

    @cached_property
    def config(self) -> dict[str, Any]:
        path = self.model.path / "config.json"
        if not path.is_file():
            raise GuardError(f"{self.model.path} has no config.json (id2label, problem_type).")
        return json.loads(path.read_text(encoding="utf-8"))

    def _label_spec(self, given: tuple[str, ...] | None) -> LabelSpec:
        if given is not None:
            return label_spec(self.config, given, model=self.name)
        preset = CATALOG_UNSAFE_LABELS.get(self.name)
        entry = load_catalog().get(self.name) if preset is not None else None
        if preset is None or entry is None or entry.family != NAME:
            return label_spec(self.config, None, model=self.name)
        known = {n.lower() for n in label_spec(self.config).names}
        present = [label for label in preset if label.lower() in known]
        if not present:
            raise GuardError(
                f"Model '{self.name}' has none of the labels its catalog entry counts as "
                f"unsafe ({', '.join(preset)}).",
                hint="Name them with --unsafe-labels (see id2label in its config.json).",
                code=ExitCode.MODEL,
            )
        return label_spec(self.config, present, model=self.name)

    @property
    def verdict_threshold(self) -> float | None:
        return None if self.labels.multi_label else self.threshold

    @cached_property
    def session(self) -> Session:
        return open_session(self.model, threads=self.threads, one_shot=self.one_shot)

    def runtime_calls(self) -> list[tuple[object, str]]:
        return [(self.session, "run")]

    @cached_property
    def segmenter(self) -> Segmenter:
        return Segmenter(self.model.path, self.max_length, self.overlap)

    # ------------------------------------------------------------------ scoring

    def logits(self, batch: list[Encoded]) -> np.ndarray:
        ids, mask = pad([e.ids for e in batch], self.tokenizer.pad_id, side="right")
        start = time.perf_counter()
        out = self.session.run(ids, mask)
        record_time("inference", time.perf_counter() - start)
        return np.asarray(out, dtype=np.float64)

    def score_batch(self, batch: list[Encoded]) -> list[Judgement]:
        probs = probabilities(self.logits(batch), self.labels.multi_label)
        return [self._judge(row) for row in probs]

    def _judge(self, row: np.ndarray) -> Judgement:
        spec = self.labels
        score = float(unsafe_score(row, spec))
        if not spec.multi_label:
            flagged = score >= self.threshold
            if flagged:
                top = max(spec.unsafe, key=lambda i: row[i])
            else:
                top = max(
                    (i for i in range(len(row)) if i not in spec.unsafe), key=lambda i: row[i]
                )
            return Judgement(score=score, flagged=flagged, label=spec.names[top])
        categories = {}
        for i in spec.unsafe:
            name = spec.names[i]
            categories[name] = {
                "score": round(float(row[i]), 6),
                "threshold": self.thresholds[name],
                "flagged": bool(row[i] >= self.thresholds[name]),
            }
        hits = [n for n, c in categories.items() if c["flagged"]]
        top_name = max(categories, key=lambda n: categories[n]["score"])
        return Judgement(
            score=score,
            flagged=bool(hits),
            label=top_name if hits else "safe",
            categories=categories,
        )

    # ------------------------------------------------------------------ --long segments

    def classify_records(
        self, records: list[Record], on_batch: Callable[[int], None] | None = None
    ) -> list[Verdict]:
        if self.long != "segments":
            return super().classify_records(records, on_batch)
        verdicts: list[Verdict | None] = [None] * len(records)
        texts: dict[int, str] = {}
        for i, record in enumerate(records):
            if record.error is not None:
                verdicts[i] = Verdict.failed(record, record.error, fail_closed=self.fail_closed)
                continue
            try:
                texts[i] = self.prepare(record)[0]
            except RecordError as err:
                verdicts[i] = Verdict.failed(record, err, fail_closed=self.fail_closed)
            except GuardError:
                raise
            except Exception as exc:
                error = unreadable(record, exc)
                verdicts[i] = Verdict.failed(record, error, fail_closed=self.fail_closed)
        windows = self._windows(records, texts, verdicts)
        flat = [(i, w) for i, ws in windows.items() for w in ws]
        results: list[Judgement | RecordError | None] = [None] * len(flat)
        left = {i: len(ws) for i, ws in windows.items()}
        lengths = [len(w.enc.ids) for _, w in flat]
        for batch in plan_batches(
            lengths, batch_size=self.batch_size, token_budget=self.token_budget
        ):
            judged = self.score_batch([flat[j][1].enc for j in batch])
            done = 0
            for j, judgement in zip(batch, judged, strict=True):
                results[j] = finite_or_error(judgement)
                left[flat[j][0]] -= 1
                done += left[flat[j][0]] == 0
            if on_batch and done:
                on_batch(done)
        start = 0
        for i, ws in windows.items():
            mine = results[start : start + len(ws)]
            start += len(ws)
            verdicts[i] = self._worst(records[i], ws, mine)
        return [v for v in verdicts if v is not None]

    def _windows(
        self, records: list[Record], texts: dict[int, str], verdicts: list[Verdict | None]
    ) -> dict[int, list[Window]]:
        """Each text's windows, tokenized in one call (one at a time when that call fails, so
        only the text the tokenizer cannot take becomes an error)."""
        order = list(texts)
        try:
            return dict(zip(order, self.segmenter.windows([texts[i] for i in order]), strict=True))
        except GuardError:
            raise
        except Exception:
            pass
        out: dict[int, list[Window]] = {}
        for i in order:
            try:
                out[i] = self.segmenter.windows([texts[i]])[0]
            except GuardError:
                raise
            except Exception as exc:
                error = unreadable(records[i], exc)
                verdicts[i] = Verdict.failed(records[i], error, fail_closed=self.fail_closed)
        return out

    def _worst(self, record: Record, windows: list[Window], results: list[Any]) -> Verdict:
        """The verdict of the worst window (highest unsafe score; the first on a tie). Any
        window that could not be judged makes the record an error: fail closed, never safe."""
        for result in results:
            if isinstance(result, RecordError):
                result.line = result.line or record.line
                return Verdict.failed(record, result, fail_closed=self.fail_closed)
        worst = max(range(len(results)), key=lambda k: (results[k].score, -k))
        verdict = self._verdict(record, results[worst], windows[worst].enc)
        verdict.tokens = sum(len(w.enc.ids) for w in windows)
        verdict.truncated = False
        verdict.segment = windows[worst].where()
        return verdict
