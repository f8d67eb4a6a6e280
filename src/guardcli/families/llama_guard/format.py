"""Llama Guard 3's text protocol: the prompt going in, `safe` / `unsafe\\nS1,S3` coming out.

Two prompt layouts ship as package data, rendered as transformers' `apply_chat_template`
renders them: 3-1B's (S1-S13, `categories` and `excluded_category_keys` kwargs, a space before
<|eot_id|>) and 3-8B's (S1-S14, a space before <|begin_of_text|>). A model folder's own chat
template wins when it has one. The role judged is the template's own rule: an odd number of
messages judges the last User message, an even number the last Agent (response) message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from guardcli.core.chat_template import render_template
from guardcli.core.errors import GuardError
from guardcli.core.policy import Category, Policy
from guardcli.core.verdicts import RecordError

TEMPLATES = {"3-1b": "llama_guard_3_1b.jinja", "3-8b": "llama_guard_3_8b.jinja"}
DEFAULT_LAYOUT = "3-1b"
# The text every Llama Guard prompt carries (folder detection, template checks).
TEMPLATE_MARK = "<BEGIN UNSAFE CONTENT CATEGORIES>"
CATEGORY_BLOCK = re.compile(
    r"<BEGIN UNSAFE CONTENT CATEGORIES>\n(.*?)<END UNSAFE CONTENT CATEGORIES>", re.S
)
CATEGORY_LINE = re.compile(r"([A-Za-z][A-Za-z0-9_-]*): (.*)")
# Score mode appends what the model writes before its verdict (the template stops after the
# assistant header) and reads the next token's distribution.
SCORE_PREFIX = "\n\n"
VERDICT_WORDS = ("safe", "unsafe")


def packaged_template(layout: str = DEFAULT_LAYOUT) -> str:
    return (
        resources.files("guardcli.families.llama_guard")
        .joinpath(f"templates/{TEMPLATES[layout]}")
        .read_text(encoding="utf-8")
    )


def folder_template(model_dir: Path) -> str | None:
    """A folder's own Llama Guard chat template (chat_template.jinja or tokenizer_config.json)."""
    model_dir = Path(model_dir)
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        text = jinja.read_text(encoding="utf-8")
        return text if TEMPLATE_MARK in text else None
    config = model_dir / "tokenizer_config.json"
    if config.is_file():
        try:
            template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (OSError, ValueError):
            return None
        if isinstance(template, str) and TEMPLATE_MARK in template:
            return template
    return None


def model_template(model_dir: Path) -> str:
    """The folder's own template, else the 3-1B layout's."""
    return folder_template(model_dir) or packaged_template()


def as_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """String contents as a list with one text part (the 3-1B template's content form)."""
    return [
        {**m, "content": [{"type": "text", "text": m["content"]}]}
        if isinstance(m.get("content"), str)
        else m
        for m in messages
    ]


@lru_cache(maxsize=8)
def takes_parts(template: str) -> bool:
    """Whether the template reads contents as lists of parts (3-1B's Hugging Face template, which
    would silently drop a string content) rather than as strings (3-8B's)."""
    probe = [{"role": "user", "content": "Zq9probe"}]
    if "User: Zq9probe\n" in render_template(template, probe):
        return False
    if "User: Zq9probe\n" in render_template(template, as_parts(probe)):
        return True
    raise GuardError("This chat template shows neither string nor text-part contents.")


def render(
    messages: list[dict[str, Any]],
    template: str,
    categories: Sequence[Category] | None = None,
) -> str:
    """The exact model input. `categories`: the taxonomy to list (None: the template's own);
    passed as the 3-1B template's `categories` kwarg, with descriptions PFU-style on the lines
    after each name. Raises RecordError for a conversation the template refuses, or one whose
    judged turn does not appear in the prompt (never judge what the model did not see)."""
    kwargs: dict[str, Any] = {}
    if categories is not None:
        kwargs["categories"] = {c.code: category_text(c) for c in categories}
        kwargs["excluded_category_keys"] = []
    shown = as_parts(messages) if takes_parts(template) else messages
    try:
        text = render_template(template, shown, **kwargs)
    except Exception as exc:  # jinja2.TemplateError: roles that do not alternate
        raise RecordError(
            "invalid_messages", f"Llama Guard cannot take this conversation: {exc}"
        ) from None
    last = messages[-1]["content"] if messages else None
    if not isinstance(last, str) or last.strip() not in text:
        raise RecordError("invalid_messages", "the judged turn is missing from the prompt")
    return text


def category_text(category: Category) -> str:
    """What follows "CODE: " on a category's line: its name (with the full stop the model's own
    names end with), then its description on the next line, as llama-recipes'
    build_custom_prompt(with_policy=True) writes it."""
    name = category.name if category.name.endswith((".", "!", "?")) else category.name + "."
    return name if not category.description else f"{name}\n{category.description}"


def template_taxonomy(template: str) -> tuple[Category, ...]:
    """The categories a template lists by default (the model's own taxonomy)."""
    text = render([{"role": "user", "content": "x"}], template)
    block = CATEGORY_BLOCK.search(text)
    if block is None:
        raise GuardError("This chat template has no Llama Guard category list.")
    found = []
    for line in block.group(1).splitlines():
        m = CATEGORY_LINE.fullmatch(line)
        if m:
            found.append(Category(m.group(1), m.group(2).rstrip(".")))
    if not found:
        raise GuardError("This chat template lists no Llama Guard categories.")
    return tuple(found)


def takes_categories(template: str) -> bool:
    """Whether the template renders a `categories` kwarg (3-8B's Hugging Face one ignores it)."""
    probe = (Category("Zq9", "Probe"),)
    return "Zq9: Probe." in render([{"role": "user", "content": "x"}], template, probe)


def policy_template(template: str) -> str:
    """A template that lists a policy's categories: `template`, or the packaged 3-8B layout
    when it ignores them (3-8B's Hugging Face template is the one with a fixed list)."""
    return template if takes_categories(template) else packaged_template("3-8b")


def taxonomy(template: str, policy: Policy | None) -> tuple[Category, ...]:
    own = template_taxonomy(template)
    return own if policy is None else policy.apply(own)


def template_heads(
    encode: Callable[[str], list[int]],
    template: str,
    categories: Sequence[Category] | None = None,
) -> list[list[int]]:
    """The token heads every prompt-moderation and response-moderation input starts with: what
    two renderings with different contents share, less its last token (which a content could
    merge with). The role word comes before the categories, so each kind has its own head; a
    response's head ends before the user turn it follows, which varies too."""
    kinds = (
        lambda c: [{"role": "user", "content": c}],
        lambda c: [{"role": "user", "content": c}, {"role": "assistant", "content": c}],
    )
    heads = []
    for kind in kinds:
        a, b = (encode(render(kind(c), template, categories)) for c in ("alpha", "omega"))
        shared = next(
            (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        heads.append(a[: max(0, shared - 1)])
    return heads


@dataclass(frozen=True)
class Assessment:
    unsafe: bool
    codes: list[str]  # [] when safe


def _bad(reason: str, text: str, line: int | None) -> RecordError:
    return RecordError(
        "model_output",
        f"model output is not in Llama Guard's answer format: {reason}",
        line,
        raw=text,
    )


def parse(text: str, codes: Sequence[str], *, line: int | None = None) -> Assessment:
    """Generated text (decoded without special tokens) -> Assessment. After stripping the
    whitespace around it (the model writes "\\n\\n" first; the reference strips), exactly

        safe
        unsafe\\nCODE[,CODE...]        (distinct codes of the policy; a space after a comma is
                                       allowed)

    and nothing else: anything else is a `model_output` error carrying the raw output, never
    a verdict."""
    answer = text.strip()
    lines = answer.split("\n")
    if lines[0] not in VERDICT_WORDS:
        shown = lines[0] if len(lines[0]) <= 40 else lines[0][:40] + "..."
        raise _bad(f"line 1 must be 'safe' or 'unsafe', not {shown!r}", text, line)
    if lines[0] == "safe":
        if len(lines) != 1:
            raise _bad("'safe' followed by more lines", text, line)
        return Assessment(False, [])
    if len(lines) != 2:
        raise _bad(
            f"'unsafe' answers in 2 lines (the verdict, then the codes), not {len(lines)}",
            text,
            line,
        )
    found: list[str] = []
    allowed = set(codes)
    for item in lines[1].split(","):
        code = item[1:] if item.startswith(" ") and found else item
        if code not in allowed:
            raise _bad(
                f"{code!r} is not a category of this policy ({', '.join(codes)})", text, line
            )
        if code in found:
            raise _bad(f"category {code!r} listed twice", text, line)
        found.append(code)
    return Assessment(True, found)


def verdict_ids(encode: Callable[[str], list[int]]) -> tuple[list[int], int, int]:
    """(ids of SCORE_PREFIX, id of "safe", id of "unsafe"), each one token, or a GuardError:
    score mode reads P("unsafe") at the position right after the model's "\\n\\n"."""
    prefix = encode(SCORE_PREFIX)
    ids = {}
    for word in VERDICT_WORDS:
        tokens = encode(word)
        if len(tokens) != 1:
            raise GuardError(
                f"Score mode: {word!r} is {len(tokens)} tokens in this tokenizer, not one.",
                hint="Use --no-score (the verdict from generation alone).",
            )
        ids[word] = tokens[0]
    if len(prefix) != 1:
        raise GuardError(
            f"Score mode: {SCORE_PREFIX!r} is {len(prefix)} tokens in this tokenizer, not one.",
            hint="Use --no-score (the verdict from generation alone).",
        )
    return prefix, ids["safe"], ids["unsafe"]


def p_unsafe(logits: Any, unsafe_id: int) -> float:
    """P("unsafe") under the softmax of one position's logits over the whole vocabulary (the
    card: "the probability for the first token ... as the 'unsafe' class probability")."""
    import numpy as np

    row = np.asarray(logits, dtype=np.float64)
    top = row.max()
    return float(np.exp(row[unsafe_id] - top) / np.exp(row - top).sum())
