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
from importlib import resources
from pathlib import Path
from typing import Any

from guardcli.core.chat_template import render_template
from guardcli.core.errors import GuardError
from guardcli.core.verdicts import RecordError
from guardcli.core.verdicts import (
    record_messages as record_messages,  # shared with other chat families
)

SEVERITIES = ("Safe", "Controversial", "Unsafe")
# The authors' parsers (Qwen3Guard README: extract_label_and_categories and
# extract_label_categories_refusal) `re.search` their patterns anywhere in the text, so
# "Safety: Safe\nSafety: Unsafe" or a quoted "Safety: Safe" reads as safe; `parse` accepts the
# canonical answer alone, over the same vocabulary. Responses have no Jailbreak category.
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
PROMPT_CATEGORIES = frozenset(CATEGORIES)
RESPONSE_CATEGORIES = frozenset(CATEGORIES) - {"Jailbreak"}
# One answer line each, matched whole (fullmatch): nothing before the label, nothing after.
SAFETY_LINE = re.compile(r"Safety: (Safe|Unsafe|Controversial)")
REFUSAL_LINE = re.compile(r"Refusal: (Yes|No)")
# What score mode appends to the rendered input before reading the next token's logits.
SCORE_PREFIX = "Safety:"
SCORE_CONTINUATIONS = {"Safe": " Safe", "Unsafe": " Unsafe", "Controversial": " Controversial"}


def packaged_template() -> str:
    return (
        resources.files("guardcli.families.qwen3guard_gen")
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


def render(
    messages: list[dict[str, str]],
    template: str | None = None,
    categories: list[str] | None = None,
) -> str:
    """The exact model input for a conversation (add_generation_prompt is irrelevant: the
    template always ends with the assistant header). `categories` (a --policy's lines, each
    "Name." and an optional description) replace the template's category list."""
    text = render_template(template if template is not None else packaged_template(), messages)
    return text if categories is None else with_categories(text, categories)


CATEGORY_BLOCK = re.compile(
    r"(<BEGIN UNSAFE CONTENT CATEGORIES>\n)(.*?)(<END UNSAFE CONTENT CATEGORIES>)", re.S
)


def with_categories(text: str, lines: list[str]) -> str:
    """`text` with the lines of its (one) category block replaced."""
    if len(CATEGORY_BLOCK.findall(text)) != 1:
        raise GuardError("This chat template has no single category list to replace (--policy).")
    body = "".join(line + "\n" for line in lines)
    return CATEGORY_BLOCK.sub(lambda m: m.group(1) + body + m.group(3), text, count=1)


def template_heads(
    encode: Callable[[str], list[int]],
    template: str | None = None,
    categories: list[str] | None = None,
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
        a, b = (
            encode(render(kind(content), template, categories)) for content in ("alpha", "omega")
        )
        shared = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        heads.append(a[: max(0, shared - 1)])
    return heads


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


def _bad(reason: str, text: str, line: int | None) -> RecordError:
    return RecordError(
        "model_output",
        f"model output is not in Qwen3Guard's answer format: {reason}",
        line,
        raw=text,
    )


def _shown(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "...")


def parse(
    text: str,
    *,
    response: bool,
    line: int | None = None,
    names: frozenset[str] | None = None,
) -> Assessment:
    """Generated text -> Assessment, accepting exactly the canonical answer and nothing else:

        Safety: Safe|Unsafe|Controversial
        Categories: None | NAME[, NAME...]        (distinct names; Safe only with None)
        Refusal: Yes|No                           (response moderation only)

    lines joined by a single newline, nothing before or after (the reference decodes with
    skip_special_tokens, so the closing <|im_end|> is gone and no newline is left). The
    authors' own patterns (`re.search` anywhere) read "Safety: Safe\\nSafety: Unsafe" or a
    quoted "Safety: Safe" as safe; a guard must not, so anything else is a `model_output`
    error carrying the raw output, never a verdict. `names`: the categories a --policy allows
    (default: the authors').
    """
    if names is None:
        names = RESPONSE_CATEGORIES if response else PROMPT_CATEGORIES
    kind = "response" if response else "prompt"
    expected = ["Safety", "Categories", *(["Refusal"] if response else [])]
    lines = text.split("\n")
    safeties = text.count("Safety:")
    if safeties > 1:
        raise _bad(f"'Safety:' appears {safeties} times; one answer is allowed", text, line)
    if text != text.strip():
        raise _bad("leading or trailing whitespace around the answer", text, line)
    safety = SAFETY_LINE.fullmatch(lines[0])
    if safety is None:
        raise _bad(
            f"line 1 must be 'Safety: Safe|Unsafe|Controversial', not {_shown(lines[0])}",
            text,
            line,
        )
    if len(lines) != len(expected):
        raise _bad(
            f"{len(lines)} line(s); {kind} moderation answers in exactly {len(expected)} "
            f"({', '.join(expected)})",
            text,
            line,
        )
    severity = safety.group(1)
    if not lines[1].startswith("Categories: "):
        raise _bad(f"line 2 must start with 'Categories: ', not {_shown(lines[1])}", text, line)
    listed = lines[1][len("Categories: ") :].split(", ")
    categories: list[str] = []
    if listed != ["None"]:
        for name in listed:
            if name not in names:
                what = (
                    "'None' together with categories"
                    if name == "None"
                    else (f"unknown {kind} category {_shown(name)}")
                )
                raise _bad(what, text, line)
            if name in categories:
                raise _bad(f"category {name!r} listed twice", text, line)
            categories.append(name)
    if severity == "Safe" and categories:
        raise _bad(f"'Safety: Safe' with harm categories ({', '.join(categories)})", text, line)
    refusal: bool | None = None
    if response:
        found = REFUSAL_LINE.fullmatch(lines[2])
        if found is None:
            raise _bad(f"line 3 must be 'Refusal: Yes|No', not {_shown(lines[2])}", text, line)
        refusal = found.group(1) == "Yes"
    return Assessment(severity, categories, refusal)


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
