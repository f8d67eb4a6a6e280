"""Chat templates rendered as transformers renders them (`apply_chat_template`): jinja2's
sandbox with trim_blocks, lstrip_blocks, loop controls, its `tojson` and `raise_exception`, so
`--show-input` prints exactly what the reference implementation feeds the model."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=16)
def compile_template(template: str):
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


def render_template(template: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    """`apply_chat_template(messages, tokenize=False, **kwargs)` without transformers."""
    kwargs.setdefault("add_generation_prompt", False)
    return compile_template(template).render(
        messages=messages, tools=None, documents=None, **kwargs
    )
