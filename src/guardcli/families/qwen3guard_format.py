"""Qwen3Guard-Gen's text protocol: the chat template going in, the authors' patterns coming out.

The template is rendered with jinja2 in the environment transformers uses for
`apply_chat_template` (sandboxed, trim_blocks, lstrip_blocks, its tojson and raise_exception),
so `--show-input` prints exactly what the reference implementation feeds the model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..verdict import Record, RecordError

SEVERITIES = ("Safe", "Controversial", "Unsafe")
# The authors' patterns (Qwen3Guard README, extract_label_and_categories /
# extract_label_categories_refusal). Responses have no Jailbreak category.
SAFETY_PATTERN = re.compile(r"Safety: (Safe|Unsafe|Controversial)")
PROMPT_CATEGORY_PATTERN = re.compile(
    r"(Violent|Non-violent Illegal Acts|Sexual Content or Sexual Acts|PII|Suicide & Self-Harm|"
    r"Unethical Acts|Politically Sensitive Topics|Copyright Violation|Jailbreak|None)"
)
RESPONSE_CATEGORY_PATTERN = re.compile(
    r"(Violent|Non-violent Illegal Acts|Sexual Content or Sexual Acts|PII|Suicide & Self-Harm|"
    r"Unethical Acts|Politically Sensitive Topics|Copyright Violation|None)"
)
REFUSAL_PATTERN = re.compile(r"Refusal: (Yes|No)")
CATEGORIES = (
    "Violent",
    "Non-violent Illegal Acts",
    "Sexual Content or Sexual Acts",
    "PII",
    "Suicide & Self-Harm",
    "Unethical Acts",
    "Politically Sensitive Topics",
    "Copyright Violation",
    "Jailbreak",
)
# What score mode appends to the rendered input before reading the next token's logits.
SCORE_PREFIX = "Safety:"
SCORE_CONTINUATIONS = {"Safe": " Safe", "Unsafe": " Unsafe", "Controversial": " Controversial"}
ROLES = ("system", "user", "assistant")


def packaged_template() -> str:
    return (
        resources.files("guardcli.families")
        .joinpath("templates/qwen3guard_gen.jinja")
        .read_text(encoding="utf-8")
    )


def model_template(model_dir: Path) -> str:
    """The model folder's own chat template (chat_template.jinja or tokenizer_config.json),
    else the one Qwen ships with Qwen3Guard-Gen."""
    model_dir = Path(model_dir)
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            return template
    return packaged_template()


@lru_cache(maxsize=8)
def _compiled(template: str):
    """The template compiled in transformers' chat-template environment
    (transformers/utils/chat_template_utils.py, _cached_compile_jinja_template)."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render(messages: list[dict[str, str]], template: str | None = None) -> str:
    """The exact model input for a conversation (add_generation_prompt is irrelevant: the
    template always ends with the assistant header)."""
    compiled = _compiled(template if template is not None else packaged_template())
    return compiled.render(
        messages=messages, tools=None, documents=None, add_generation_prompt=False
    )


def template_heads(
    encode: Callable[[str], list[int]], template: str | None = None
) -> list[list[int]]:
    """The token heads every rendered prompt-moderation and response-moderation input starts
    with: what two renderings with different contents share, less its last token (which a
    content could merge with)."""
    kinds = (
        lambda c: [{"role": "user", "content": c}],
        lambda c: [{"role": "user", "content": c}, {"role": "assistant", "content": "ok"}],
    )
    heads = []
    for kind in kinds:
        a, b = (encode(render(kind(content), template)) for content in ("alpha", "omega"))
        shared = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        heads.append(a[: max(0, shared - 1)])
    return heads


def record_messages(record: Record) -> list[dict[str, str]]:
    """A record's conversation: its `messages` (validated), else its text as one user turn."""
    if record.messages is None:
        if record.text is None:
            raise RecordError("missing_field", "record has no text or messages", record.line)
        return [{"role": "user", "content": record.text}]
    out: list[dict[str, str]] = []
    for n, message in enumerate(record.messages, start=1):
        if not isinstance(message, dict):
            raise RecordError("bad_field", f"messages[{n}] must be an object", record.line)
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RecordError(
                "bad_field",
                f"messages[{n}].role must be one of {', '.join(ROLES)}, not {role!r}",
                record.line,
            )
        if not isinstance(content, str):
            raise RecordError("bad_field", f"messages[{n}].content must be a string", record.line)
        out.append({"role": role, "content": content})
    if not out:
        raise RecordError("empty_text", "messages is empty", record.line)
    if out[-1]["role"] == "system":
        raise RecordError(
            "bad_field", "the last message must be from the user or the assistant", record.line
        )
    return out


def is_response(messages: list[dict[str, str]]) -> bool:
    """The template's own rule: the last turn not from the user means response moderation."""
    return messages[-1]["role"] != "user"


@dataclass(frozen=True)
class Assessment:
    severity: str  # Safe | Controversial | Unsafe
    categories: list[str]  # [] for None
    refusal: bool | None  # responses only

    def flagged(self, strict: bool) -> bool:
        return self.severity == "Unsafe" or (strict and self.severity == "Controversial")


def parse(text: str, *, response: bool, line: int | None = None) -> Assessment:
    """Generated text -> Assessment with the authors' patterns. Text with no `Safety:` line is
    an error carrying the raw output: it is never taken as safe."""
    safety = SAFETY_PATTERN.search(text)
    if safety is None:
        raise RecordError(
            "model_output",
            "model output matches none of Qwen3Guard's patterns (no 'Safety: Safe|Unsafe|"
            "Controversial' line)",
            line,
            raw=text,
        )
    pattern = RESPONSE_CATEGORY_PATTERN if response else PROMPT_CATEGORY_PATTERN
    categories: list[str] = []
    for name in pattern.findall(text):
        if name != "None" and name not in categories:
            categories.append(name)
    refusal: bool | None = None
    if response and (match := REFUSAL_PATTERN.search(text)):
        refusal = match.group(1) == "Yes"
    return Assessment(safety.group(1), categories, refusal)


def score_probabilities(logits: Any, token_ids: dict[str, int]) -> dict[str, float]:
    """Softmax of one position's logits renormalised over the three severity tokens."""
    import numpy as np

    picked = np.array([float(logits[token_ids[s]]) for s in SEVERITIES], dtype=np.float64)
    picked -= picked.max()
    probs = np.exp(picked) / np.exp(picked).sum()
    return {s: float(p) for s, p in zip(SEVERITIES, probs, strict=True)}


def severity_score(probs: dict[str, float], strict: bool) -> float:
    return probs["Unsafe"] + (probs["Controversial"] if strict else 0.0)


def score_tokens(encode) -> tuple[list[int], dict[str, int]]:
    """(common prefix ids, {severity: first differing token id}) for the three continuations
    of "Safety:". `encode(text) -> list[int]`. Two severities sharing that token would make the
    score meaningless, so that fails loudly."""
    from ..errors import GuardError

    seqs = {s: encode(c) for s, c in SCORE_CONTINUATIONS.items()}
    at = 0
    while (
        all(len(seq) > at for seq in seqs.values()) and len({seq[at] for seq in seqs.values()}) == 1
    ):
        at += 1
    if any(len(seq) <= at for seq in seqs.values()):
        raise GuardError("Score mode: one severity's tokens are a prefix of another's.")
    firsts = {s: seq[at] for s, seq in seqs.items()}
    if len(set(firsts.values())) != len(firsts):
        raise GuardError(
            f"Score mode: severities share their first differing token ({firsts}).",
            hint="This tokenizer cannot tell the severities apart from one token; use --no-score.",
        )
    prefix = seqs["Safe"][:at]
    return prefix, firsts
