"""The wire protocols `guard serve` speaks, as pure functions: request JSON -> Records, and
Verdicts -> response JSON. No web framework here, so each shape is testable on its own.

Shapes follow ../shared/specs/protocols.md: LiteLLM's generic guardrail API, OpenAI
moderations, OpenCC's /check, and guard's own record schema.
"""

from __future__ import annotations

from guardcli.jobs.serve.policy import (  # noqa: F401 (re-exported)
    EMPTY,
    UNJUDGED,
    BadRequest,
    Limits,
    Policy,
    unjudged,
)
from guardcli.jobs.serve.requests import (  # noqa: F401 (re-exported)
    _count,
    _messages,
    _object,
    _part_text,
    _text_records,
    _threshold,
    check_request,
    classify_request,
    clip,
    guardrail_request,
    moderation_request,
)
from guardcli.jobs.serve.responses import (  # noqa: F401 (re-exported)
    _categories,
    _negative,
    _reason,
    check_response,
    classify_response,
    decision,
    failed_verdict,
    guardrail_response,
    moderation_response,
    moderation_result,
    rethreshold,
)
