"""Qwen3Guard-Gen: a causal LM that answers "Safety: ...\\nCategories: ...[\\nRefusal: ...]".

Records whose last message is from the user get prompt moderation; a conversation ending with
an assistant turn gets response moderation (the template's own rule). Backends: onnxruntime on
a KV-cache graph, torch (transformers, the reference; float32 or bfloat16 as `dtype` chooses,
auto: bfloat16 only where the CPU has native bf16), or a remote OpenAI-compatible endpoint.
Score mode reads P(severity) from one forward pass over the input followed by "Safety:".
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from guardcli.core.catalog import load_catalog
from guardcli.core.errors import GuardError, input_error
from guardcli.core.policy import Category, as_policy
from guardcli.core.resolve import ResolvedModel
from guardcli.core.tokenize import Encoded
from guardcli.core.verdicts import Record, RecordError
from guardcli.families import register_family
from guardcli.families.base import Judgement
from guardcli.families.generative import GenerativeGuard
from guardcli.families.qwen3guard_gen import format as fmt
from guardcli.families.qwen3guard_gen.options import Qwen3GuardOptions

BACKENDS = ("auto", "onnxruntime", "torch", "remote", "llamacpp")


@register_family
class Qwen3GuardGen(GenerativeGuard):
    family = "qwen3guard-gen"
    options_type = Qwen3GuardOptions

    def __init__(
        self,
        model: ResolvedModel,
        *,
        strict: bool = True,
        score: bool = True,
        generate: bool = True,
        backend: str = "auto",
        endpoint: str | None = None,
        served_model: str | None = None,
        api_key: str | None = None,
        concurrency: int | None = None,
        max_new_tokens: int = 128,
        dtype: str | None = None,
        policy: Any = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        self.policy = as_policy(policy)
        if self.policy is not None and endpoint:
            raise input_error(
                "--policy does not apply with --endpoint: the server renders its own template.",
                "Drop --policy, or run the model locally.",
            )
        self.policy_names  # noqa: B018 - a bad policy is a usage error before any work
        self.choose_backend(backend, BACKENDS, dtype, endpoint)
        self.choose_modes(score, generate)
        self.strict = strict
        self.endpoint = endpoint
        self.served_model = served_model
        self.api_key = api_key
        self.concurrency = concurrency
        self.max_new_tokens = max_new_tokens

    # ------------------------------------------------------------------ input

    @cached_property
    def template(self) -> str:
        return fmt.model_template(self.model.path)

    @cached_property
    def policy_names(self) -> tuple[frozenset[str], frozenset[str]] | None:
        """The category names a --policy allows (prompts, responses); None: the authors'."""
        if self.policy is None:
            return None
        own = [Category(name, name) for name in fmt.CATEGORIES]
        kept = self.policy.apply(own)
        for c in kept:
            if "," in c.name:
                raise input_error(
                    f"--policy {self.policy.source}: category name {c.name!r} has a comma, "
                    "which Qwen3Guard's answer uses between names."
                )
        names = frozenset(c.name for c in kept)
        response = names - {"Jailbreak"} if self.policy.categories is None else names
        return names, response

    @cached_property
    def policy_lines(self) -> tuple[list[str], list[str]] | None:
        """The category lines the prompt lists for prompts and responses under a --policy."""
        if self.policy is None or self.policy_names is None:
            return None
        own = [Category(name, name) for name in fmt.CATEGORIES]
        kept = self.policy.apply(own)

        def line(c: Category) -> str:
            return f"{c.name}." + (f"\n{c.description}" if c.description else "")

        response = self.policy_names[1]
        return [line(c) for c in kept], [line(c) for c in kept if c.name in response]

    def render(self, record: Record) -> str:
        messages = fmt.record_messages(record)
        lines = None
        if self.policy_lines is not None:
            lines = self.policy_lines[1 if fmt.is_response(messages) else 0]
        return fmt.render(messages, self.template, lines)

    def encode(self, texts: list[str]) -> list[Encoded]:
        if self.backend == "remote" and not (self.model.path / "tokenizer.json").is_file():
            return [Encoded([], False) for _ in texts]  # the server tokenizes
        return super().encode(texts)

    # ------------------------------------------------------------------ backends

    @cached_property
    def lm(self):
        if self.backend not in ("onnxruntime", "llamacpp"):
            return self.causal_lm(None)
        encode = lambda t: self.tokenizer.encode([t])[0].ids  # noqa: E731
        if self.policy_lines is None:
            return self.causal_lm(fmt.template_heads(encode, self.template))
        # Each kind's head holds its own category list.
        lines = self.policy_lines
        return self.causal_lm(
            [fmt.template_heads(encode, self.template, lines[k])[k] for k in range(len(lines))]
        )

    def runtime_calls(self) -> list[tuple[object, str]]:
        if self.backend == "remote":
            raise input_error(
                "A remote endpoint is not timed here: guard bench runs local backends.",
                "Drop --endpoint, and pass a model folder with --model.",
            )
        return [(self.lm, "score_logits"), (self.lm, "generate")]

    def weight_files(self) -> list[Path]:
        if self.backend != "torch":
            return super().weight_files()
        path = self.model.path
        return sorted([*path.glob("*.safetensors"), *path.glob("pytorch_model*.bin")])

    @cached_property
    def remote(self):
        from guardcli.runtime.openai_chat import DEFAULT_CONCURRENCY, ChatEndpoint

        assert self.endpoint
        return ChatEndpoint(
            self.endpoint,
            self.served_model or self._repo_id(),
            api_key=self.api_key,
            concurrency=self.concurrency or DEFAULT_CONCURRENCY,
            max_tokens=self.max_new_tokens,
            logprobs=self.use_score,
        )

    def _repo_id(self) -> str:
        """vLLM serves a model under its hub repo id unless told otherwise."""

        entry = load_catalog().get(self.name)
        return entry.repo if entry is not None else self.name

    @cached_property
    def score_ids(self) -> tuple[list[int], dict[str, int]]:
        """Token ids of "Safety:" + the common prefix of the three continuations, and the first
        differing token of each severity."""
        tok = self.tokenizer.tokenizer

        def encode(text: str) -> list[int]:
            return tok.encode(text, add_special_tokens=False).ids

        prefix, firsts = fmt.score_tokens(encode)
        return encode(fmt.SCORE_PREFIX) + prefix, firsts

    # ------------------------------------------------------------------ judging

    def score_batch(self, batch: list[Encoded]) -> Sequence[Judgement | RecordError]:
        convs = [fmt.record_messages(e.record) for e in batch]
        responses = [fmt.is_response(c) for c in convs]
        if self.backend == "remote":
            return self._remote_batch(convs, responses)
        probs: list[dict[str, float] | None] = [None] * len(batch)
        if self.use_score:
            suffix, firsts = self.score_ids
            # Score mode alone runs a head computing only the severities' logits; with
            # generation on, the full-vocabulary graph is loaded anyway and serves both.
            logits = self.lm.score_logits(
                [e.ids + suffix for e in batch],
                list(firsts.values()),
                own_head=not self.use_generation,
            )
            columns = {s: j for j, s in enumerate(firsts)}
            probs = [fmt.score_probabilities(row, columns) for row in logits]
        if not self.use_generation:
            return [self._from_score(p) for p in probs]
        decode = self.tokenizer.tokenizer.decode
        outputs = self.lm.generate([e.ids for e in batch], self.max_new_tokens)
        texts = [decode(ids, skip_special_tokens=True) for ids in outputs]
        return [
            self._judge(text, response, p)
            for text, response, p in zip(texts, responses, probs, strict=True)
        ]

    def _remote_batch(self, convs, responses) -> list[Judgement | RecordError]:
        from guardcli.runtime.openai_chat import severity_probabilities

        out: list[Judgement | RecordError] = []
        for completion, response in zip(self.remote.complete_all(convs), responses, strict=True):
            if isinstance(completion, RecordError):
                out.append(completion)
                continue
            probs = None
            if self.use_score and completion.logprobs:
                probs = severity_probabilities(
                    completion.logprobs, fmt.SCORE_PREFIX, fmt.SCORE_CONTINUATIONS
                )
            out.append(self._judge(completion.text, response, probs))
        return out

    def _judge(
        self, text: str, response: bool, probs: dict[str, float] | None
    ) -> Judgement | RecordError:
        try:
            names = None if self.policy_names is None else self.policy_names[int(response)]
            found = fmt.parse(text, response=response, names=names)
        except RecordError as err:
            return err
        flagged = found.flagged(self.strict)
        return Judgement(
            score=None if probs is None else fmt.severity_score(probs, self.strict),
            flagged=flagged,
            label="unsafe" if flagged else "safe",
            categories=found.categories,
            severity=found.severity,
            refusal=found.refusal,
        )

    def _from_score(self, probs: dict[str, float] | None) -> Judgement:
        if probs is None:
            raise GuardError("Score mode produced no probabilities.")
        score = fmt.severity_score(probs, self.strict)
        flagged = score >= self.threshold
        return Judgement(score=score, flagged=flagged, label="unsafe" if flagged else "safe")
