"""ONNX sequence classifiers with a binary softmax head (CSAM-Guard and fine-tunes like it)."""

from __future__ import annotations

import json
import time
from functools import cached_property

import numpy as np

from guardcli.core.batching import pad
from guardcli.core.timings import record
from guardcli.core.tokenize import Encoded
from guardcli.families import register_family
from guardcli.families.base import Guard, Judgement
from guardcli.runtime import Session, open_session


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


@register_family
class SeqClsGuard(Guard):
    """Raw text in; P(unsafe) = softmax(logits)[1] (sigmoid for a one-logit head)."""

    family = "seqcls"
    padding_side = "right"

    @cached_property
    def session(self) -> Session:
        return open_session(self.model, threads=self.threads, one_shot=self.one_shot)

    def runtime_calls(self) -> list[tuple[object, str]]:
        return [(self.session, "run")]

    @cached_property
    def labels(self) -> tuple[str, str]:
        config = self.model.path / "config.json"
        names: dict[str, str] = {}
        if config.exists():
            names = json.loads(config.read_text(encoding="utf-8")).get("id2label") or {}
        return (str(names.get("0", "safe")), str(names.get("1", "unsafe")))

    def score_batch(self, batch: list[Encoded]) -> list[Judgement]:
        ids, mask = pad([e.ids for e in batch], self.tokenizer.pad_id, side=self.padding_side)
        session = self.session
        start = time.perf_counter()
        logits = session.run(ids, mask).astype(np.float64)
        record("inference", time.perf_counter() - start)
        return self.judgements(logits)

    def judgements(self, logits: np.ndarray) -> list[Judgement]:
        """Verdicts from class logits [batch, labels] (float64)."""
        if logits.shape[-1] == 1:
            scores = 1.0 / (1.0 + np.exp(-logits[:, 0]))
        else:
            scores = softmax(logits)[:, 1]
        safe, unsafe = self.labels
        return [
            Judgement(
                score=float(s),
                flagged=bool(s >= self.threshold),
                label=unsafe if s >= self.threshold else safe,
            )
            for s in scores
        ]
