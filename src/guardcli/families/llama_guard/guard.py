"""Llama Guard 3: a causal LM that answers "safe" or "unsafe\\nS1,S3" about the last turn.

One user message (or an odd count) asks about the User; a conversation ending with an assistant
turn asks about the Agent (the template's own rule). Backends: onnxruntime on a KV-cache graph
(the template head's KV cache computed once and reused), or torch (transformers, the
reference). Score mode reads P("unsafe") from one forward pass over the input followed by
"\\n\\n", the first verdict position. `--policy FILE` replaces the taxonomy the prompt lists;
the parser then accepts only that policy's codes, and verdicts name its categories.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError, input_error
from guardcli.core.policy import Category, as_policy
from guardcli.core.resolve import ResolvedModel
from guardcli.core.tokenize import Encoded
from guardcli.core.verdicts import Record, RecordError, record_messages
from guardcli.families import register_family
from guardcli.families.base import Judgement
from guardcli.families.generative import GenerativeGuard
from guardcli.families.llama_guard import format as fmt
from guardcli.families.llama_guard.options import LlamaGuardOptions

BACKENDS = ("auto", "onnxruntime", "torch", "llamacpp")


@register_family
class LlamaGuard(GenerativeGuard):
    family = "llama-guard"
    options_type = LlamaGuardOptions

    def __init__(
        self,
        model: ResolvedModel,
        *,
        score: bool = True,
        generate: bool = True,
        policy: Any = None,
        max_new_tokens: int = 32,
        backend: str = "auto",
        endpoint: str | None = None,
        dtype: str | None = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        if endpoint:
            raise input_error(
                "llama-guard does not run on --endpoint yet.",
                "Drop --endpoint and run the model folder locally (onnxruntime or torch).",
            )
        self.choose_backend(backend, BACKENDS, dtype)
        self.choose_modes(score, generate)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise input_error(f"max_new_tokens must be a positive integer, not {max_new_tokens!r}.")
        self.max_new_tokens = max_new_tokens
        self.policy = as_policy(policy)
        # Read the template and the policy now: a bad policy is a usage error before any work.
        self.categories  # noqa: B018

    # ------------------------------------------------------------------ input

    @cached_property
    def template(self) -> str:
        own = fmt.model_template(self.model.path)
        return own if self.policy is None else fmt.policy_template(own)

    @cached_property
    def categories(self) -> tuple[Category, ...]:
        """The taxonomy the prompt lists: the model's own, or the policy's."""
        return fmt.taxonomy(self.template, self.policy)

    @cached_property
    def _listed(self) -> tuple[Category, ...] | None:
        """What `render` passes as the categories kwarg (None: the template's default list)."""
        return None if self.policy is None else self.categories

    def render(self, record: Record) -> str:
        # Llama Guard's prompt has no system slot (its template refuses one): system turns are
        # left out; the turn judged is the last user or assistant one either way.
        messages = [m for m in record_messages(record) if m["role"] != "system"]
        return fmt.render(messages, self.template, self._listed)

    def encode(self, texts: list[str]) -> list[Encoded]:
        # The rendered prompt carries <|begin_of_text|> itself: no second BOS.
        encodings = self.tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)
        return [Encoded(e.ids, bool(e.overflowing)) for e in encodings]

    def _encode_text(self, text: str) -> list[int]:
        return self.tokenizer.tokenizer.encode(text, add_special_tokens=False).ids

    # ------------------------------------------------------------------ backends

    @cached_property
    def lm(self):
        return self.causal_lm(fmt.template_heads(self._encode_text, self.template, self._listed))

    def runtime_calls(self) -> list[tuple[object, str]]:
        return [(self.lm, "next_logits"), (self.lm, "generate")]

    def weight_files(self) -> list[Path]:
        if self.backend != "torch":
            return super().weight_files()
        path = self.model.path
        return sorted([*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")])

    @cached_property
    def score_ids(self) -> tuple[list[int], int]:
        """Token ids of "\\n\\n" and of "unsafe" (each one token, or a GuardError)."""
        prefix, _safe, unsafe = fmt.verdict_ids(self._encode_text)
        return prefix, unsafe

    # ------------------------------------------------------------------ judging

    def score_batch(self, batch: list[Encoded]) -> Sequence[Judgement | RecordError]:
        probs: list[float | None] = [None] * len(batch)
        if self.use_score:
            suffix, unsafe = self.score_ids
            logits = self.lm.next_logits([e.ids + suffix for e in batch])
            probs = [fmt.p_unsafe(row, unsafe) for row in logits]
        if not self.use_generation:
            return [self._from_score(p) for p in probs]
        decode = self.tokenizer.tokenizer.decode
        outputs = self.lm.generate([e.ids for e in batch], self.max_new_tokens)
        return [
            self._judge(decode(ids, skip_special_tokens=True), p)
            for ids, p in zip(outputs, probs, strict=True)
        ]

    def _judge(self, text: str, prob: float | None) -> Judgement | RecordError:
        codes = [c.code for c in self.categories]
        try:
            found = fmt.parse(text, codes)
        except RecordError as err:
            return err
        names = {c.code: c.name for c in self.categories}
        return Judgement(
            score=prob,
            flagged=found.unsafe,
            label="unsafe" if found.unsafe else "safe",
            categories=[names[code] for code in found.codes],
        )

    def _from_score(self, prob: float | None) -> Judgement:
        if prob is None:
            raise GuardError("Score mode produced no probability.")
        flagged = prob >= self.threshold
        return Judgement(score=prob, flagged=flagged, label="unsafe" if flagged else "safe")
