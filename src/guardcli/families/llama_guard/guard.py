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
from typing import Any, ClassVar

from guardcli.core.errors import GuardError, input_error
from guardcli.core.policy import Category, as_policy
from guardcli.core.resolve import ResolvedModel
from guardcli.core.tokenize import Encoded
from guardcli.core.torch_dtype import SHORT, resolve_dtype
from guardcli.core.variants import TORCH_VARIANT, runtime_name
from guardcli.core.verdicts import Record, RecordError, record_messages
from guardcli.families import register_family
from guardcli.families.base import Guard, Judgement
from guardcli.families.llama_guard import format as fmt
from guardcli.families.llama_guard.options import LlamaGuardOptions

BACKENDS = ("auto", "onnxruntime", "torch")


@register_family
class LlamaGuard(Guard):
    family = "llama-guard"
    accepts_messages = True
    runtimes: ClassVar[dict[str, str]] = {"onnxruntime": "onnxruntime", "torch": "torch"}
    modes: ClassVar[tuple[str, ...]] = ("generate", "score")
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
        backend = runtime_name(backend)
        if backend not in BACKENDS:
            raise input_error(
                f"Unknown backend {backend!r}.", f"Choose one of: {', '.join(BACKENDS)}."
            )
        if not (score or generate):
            raise input_error("Nothing to do: both generation and score mode are off.")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise input_error(f"max_new_tokens must be a positive integer, not {max_new_tokens!r}.")
        self.use_score = score
        self.use_generation = generate
        self.max_new_tokens = max_new_tokens
        self.policy = as_policy(policy)
        if backend == "auto":
            backend = "torch" if model.variant == TORCH_VARIANT else "onnxruntime"
        self.backend = backend
        self.dtype = resolve_dtype(dtype)
        if backend == "torch":
            self.variant = f"{TORCH_VARIANT}-{SHORT[self.dtype]}"
        elif dtype not in (None, "auto"):
            raise input_error(
                f"--dtype applies to the torch backend, not to {backend}.",
                "Drop --dtype, or add --backend torch.",
            )
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
        if self.backend == "onnxruntime":
            from guardcli.runtime.causal_lm import OnnxCausalLM

            heads = fmt.template_heads(self._encode_text, self.template, self._listed)
            return OnnxCausalLM(
                self.model.graph, self.model.path, threads=self.threads, prefixes=heads
            )
        from guardcli.runtime.causal_lm import TorchCausalLM

        return TorchCausalLM(self.model.path, threads=self.threads, dtype=self.dtype)

    def use_mode(self, mode: str) -> None:
        if mode not in self.modes:
            super().use_mode(mode)
        self.use_generation = mode == "generate"
        self.use_score = mode == "score"

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
