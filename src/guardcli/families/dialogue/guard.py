"""Dialogue-intent classifiers (e.g. intent_safety_clf_4b): Qwen3ForSequenceClassification,
exported to ONNX, judging the user's latest intent from the role-play context.

They are right only when the input is formatted exactly as in training (spec §4): the context
(never the bot's pending reply) as the last 8 `[role] text` turns, after the task description
the model ships, trimmed from the left to fit 4,096 tokens; left padding and truncation.
"""

from __future__ import annotations

import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from guardcli.core.errors import GuardError
from guardcli.core.timings import record
from guardcli.core.tokenize import Encoded, TextTokenizer
from guardcli.core.verdicts import Record, RecordError
from guardcli.families import register_family
from guardcli.families.base import Judgement
from guardcli.families.classifier import SeqClsGuard
from guardcli.families.dialogue import DIALOGUE_MARKER, KV_GRAPHS

ROLES = {"user": "user", "you": "user", "assistant": "assistant", "bot": "assistant"}
ROLES["system"] = "system"
MAX_TURNS = 8
# Tokens kept free after the prefix and the context (the reference's margin).
MARGIN = 8


def format_ctx(messages: list[dict[str, Any]], max_turns: int = MAX_TURNS) -> str:
    """The context: normalised roles, stripped non-empty turns, no trailing assistant turn
    (the reply under review), the last `max_turns`, `[role] text` joined by blank lines."""
    turns: list[tuple[str, str]] = []
    for message in messages:
        role = ROLES.get(str(message.get("role", "")).strip().lower(), "unknown")
        content = message.get("content")
        text = "" if content is None else str(content).strip()
        if text:
            turns.append((role, text))
    if turns and turns[-1][0] == "assistant":
        turns.pop()
    return "\n\n".join(f"[{role}] {text}" for role, text in turns[-max_turns:])


def model_prefix(task_description: str) -> str:
    """Everything before the context."""
    return f"任务描述:\n{task_description}\n\nctx:\n"


def read_task_description(model_dir: Path) -> str:
    path = Path(model_dir) / DIALOGUE_MARKER
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise GuardError(
            f"Cannot read the task description {path}: {exc.strerror}.",
            hint="A dialogue-intent model ships the prompt it was trained with as "
            f"{DIALOGUE_MARKER}.",
        ) from None


@register_family
class DialogueGuard(SeqClsGuard):
    """`messages` in (a plain text is one user turn); softmax, label 1 = unsafe."""

    family = "dialogue"
    accepts_messages = True
    padding_side = "left"
    truncation_side = "left"

    @cached_property
    def task_description(self) -> str:
        return read_task_description(self.model.path)

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer(self.model.path, self.max_length, truncation_side=self.truncation_side)

    def context(self, record: Record) -> str:
        if record.messages is not None:
            for n, message in enumerate(record.messages, start=1):
                if not isinstance(message, dict):
                    raise RecordError("bad_field", f"messages[{n}] must be an object", record.line)
                content = message.get("content")
                if content is not None and not isinstance(content, str):
                    # a list of parts would be judged as its Python repr: say so instead
                    raise RecordError(
                        "bad_field", f"messages[{n}].content must be a string", record.line
                    )
            ctx = format_ctx(record.messages)
        elif record.text is not None:
            ctx = format_ctx([{"role": "user", "content": record.text}])
        else:
            raise RecordError("missing_field", "record has no messages or text", record.line)
        if not ctx:
            raise RecordError(
                "empty_text",
                "no turn left after dropping empty turns and the trailing assistant reply",
                record.line,
            )
        return ctx

    def prepare(self, record: Record) -> tuple[str, bool]:
        prefix = model_prefix(self.task_description)
        ctx = self.context(record)
        # The tokenizer truncates on the left at max_length: the tail it keeps is the tail of
        # the whole context's ids, which is all the trimming needs.
        tok = self.tokenizer.tokenizer
        budget = self.max_length - len(tok.encode(prefix, add_special_tokens=False).ids) - MARGIN
        ids = tok.encode(ctx, add_special_tokens=False).ids
        full = len(ids) < self.max_length  # else the encoding was cut: longer than the budget
        if full and len(ids) <= budget:
            return prefix + ctx, False
        kept = ids[-budget:] if budget > 0 else []
        return prefix + tok.decode(kept, skip_special_tokens=False), True

    def render(self, record: Record) -> str:
        return self.prepare(record)[0]

    def encode(self, texts: list[str]) -> list[Encoded]:
        return self.tokenizer.encode(texts)

    # ------------------------------------------------------------------ prefix reuse

    @cached_property
    def prefix_lm(self):
        """The classifier with past-KV inputs (KV_GRAPHS, beside the variant's graph) when the
        folder has one for this variant and onnxruntime runs it; else None (whole prompts)."""
        name = KV_GRAPHS.get(self.model.variant)
        graph = self.model.graph.parent / name if name else None
        if self.model.backend != "onnxruntime" or graph is None or not graph.is_file():
            return None
        from guardcli.runtime.causal_lm import OnnxCausalLM

        tok = self.tokenizer.tokenizer
        # Less its last token, which the context could merge with; every row is checked to
        # start with these very ids before it reuses their KV.
        head = tok.encode(model_prefix(self.task_description), add_special_tokens=False).ids[:-1]
        return OnnxCausalLM(graph, self.model.path, threads=self.threads, prefixes=[head])

    def runtime_calls(self) -> list[tuple[object, str]]:
        if self.prefix_lm is None:
            return super().runtime_calls()
        return [(self.prefix_lm, "next_logits")]

    def score_batch(self, batch: list[Encoded]) -> list[Judgement]:
        lm = self.prefix_lm
        if lm is None or lm.shared_prefix([e.ids for e in batch]) is None:
            return super().score_batch(batch)
        start = time.perf_counter()
        logits = lm.next_logits([e.ids for e in batch]).astype(np.float64)
        record("inference", time.perf_counter() - start)
        return self.judgements(logits)
