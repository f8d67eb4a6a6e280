"""Qwen3Guard-Stream as a `classify` guard: a whole record judged at once.

A record whose conversation ends with the user gets the prompt verdict (the query heads at the
last user turn's <|im_end|>, spec §6); one that ends with the assistant gets the response
verdict: the response heads at every answer token, decided by the authors' consecutive rule
(stream.py). Verdicts: severity Safe|Unsafe|Controversial, categories [the category] when not
Safe, score P(Unsafe) (a response: the highest over its tokens); flagged on Unsafe, and on
Controversial too under `strict` (the default, as for qwen3guard-gen; classify's --loose turns
it off). `load_guard` (and `guard classify -m FOLDER`) reaches it
through the family registry; `load_stream_guard` also takes --variant torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from guardcli.core.resolve import ResolvedModel
from guardcli.core.tokenize import Encoded
from guardcli.core.verdicts import Record, RecordError, record_messages
from guardcli.families import register_family
from guardcli.families.base import Guard, Judgement
from guardcli.families.qwen3guard_stream.labels import IM_END, IM_START, USER, label_maps
from guardcli.families.qwen3guard_stream.resolve import NAME
from guardcli.families.qwen3guard_stream.served import StreamEngine
from guardcli.families.qwen3guard_stream.stream import softmax

THINK_END = 151668  # </think>


def render_conversation(messages: list[dict[str, str]]) -> str:
    """Qwen3's chat template with thinking off, up to the judged part: through the last user
    turn's <|im_end|>, or through the final answer's text (no closing <|im_end|>)."""
    *history, last = messages
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in history)
    if last["role"] == "user":
        return text + f"<|im_start|>user\n{last['content']}<|im_end|>"
    return text + f"<|im_start|>assistant\n<think>\n\n</think>\n\n{last['content']}"


def user_end(ids: list[int]) -> int | None:
    """The index of the <|im_end|> closing the last user turn (spec §6's scan)."""
    for i in range(len(ids) - 2, -1, -1):
        if ids[i] == IM_START and ids[i + 1] == USER:
            for j in range(i + 2, len(ids)):
                if ids[j] == IM_END:
                    return j
            return None
    return None


@register_family
class StreamGuard(Guard):
    family: ClassVar[str] = NAME
    accepts_messages: ClassVar[bool] = True

    def __init__(self, model: ResolvedModel, *, strict: bool = True, **options: Any):
        super().__init__(model, **options)
        self.strict = strict
        import json

        config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
        self.maps = label_maps(config)

    @property
    def verdict_threshold(self) -> float | None:
        return None  # flags come from the risk level, not a threshold

    def render(self, record: Record) -> str:
        return render_conversation(record_messages(record))

    @cached_property
    def runner(self):
        from guardcli.families.qwen3guard_stream.runners import OnnxRunner, TorchRunner

        if self.variant == "torch":
            return TorchRunner(self.model.path, threads=self.threads)
        return OnnxRunner(self.model.graph, threads=self.threads)

    def runtime_calls(self) -> list[tuple[Any, str]]:
        return [(self.runner, "feed")]

    def score_batch(self, batch: list[Encoded]) -> Sequence[Judgement | RecordError]:
        return [self._judge(enc.ids) for enc in batch]

    def _flag(self, level: str) -> bool:
        return level == "Unsafe" or (self.strict and level == "Controversial")

    def _judge(self, ids: list[int]) -> Judgement | RecordError:
        end = user_end(ids)
        if end is None:
            return RecordError("invalid_text", "the conversation has no complete user turn")
        self.runner.reset()
        risk, cat, qrisk, qcat = self.runner.feed(ids)
        if ids[-1] == IM_END and end == len(ids) - 1:  # ends with the user: prompt verdict
            p = softmax(qrisk[end].astype(np.float64))
            level = self.maps["query_risk_level_map"][int(p.argmax())]
            category = self.maps["query_category_map"][int(qcat[end].argmax())]
            return self._judgement(level, category, float(p[1]))
        try:
            first = len(ids) - 1 - ids[::-1].index(THINK_END) + 2  # after </think> and "\n\n"
        except ValueError:
            return RecordError("invalid_text", "the answer has no assistant header")
        if first >= len(ids):
            return RecordError("empty_text", "the answer is empty")
        p = softmax(risk[first:].astype(np.float64))
        levels = p.argmax(-1)
        decided: tuple[str, int] | None = None
        for wanted in (1, 2):  # Unsafe pairs first, then Controversial pairs
            pairs = np.flatnonzero((levels[:-1] == wanted) & (levels[1:] == wanted))
            if pairs.size:
                decided = (self.maps["response_risk_level_map"][wanted], int(pairs[0]) + 1)
                break
        level, at = decided or ("Safe", int(p[:, 1].argmax()))
        category = self.maps["response_category_map"][int(cat[first + at].argmax())]
        return self._judgement(level, category, float(p[:, 1].max()))

    def _judgement(self, level: str, category: str, p_unsafe: float) -> Judgement:
        return Judgement(
            score=p_unsafe,
            flagged=self._flag(level),
            label=level.lower(),
            categories=None if level == "Safe" else [category],
            severity=level,
        )

    def stream_engine(self) -> StreamEngine:
        """What `guard serve` judges many streams with, on this guard's loaded model (served.py)."""
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model.path / "tokenizer.json"))
        return StreamEngine(
            self.runner, tokenizer, self.maps, strict=self.strict, max_tokens=self.max_length
        )

    def weight_files(self) -> list[Path]:
        return [self.model.graph] if self.variant != "torch" else [self.model.path]


def load_stream_guard(
    name_or_dir: str, variant: str = "auto", *, strict: bool = True, **options: Any
) -> StreamGuard:
    """A StreamGuard on a folder or cached catalog name (variant auto|fp32|int8|torch)."""
    from guardcli.families.qwen3guard_stream.load import resolve_stream_model

    return StreamGuard(resolve_stream_model(name_or_dir, variant), strict=strict, **options)
