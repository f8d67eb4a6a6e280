"""A whole stream as JSONL events: the prompt's verdict, one event per judged chunk (or per
token), and a summary; stops at the first flagged pair of answer tokens.

Events (one JSON object per line):
- prompt: {"event": "prompt", "role": "user", "risk_level", "category", "p_unsafe",
  "probabilities", "tokens"}
- chunk: {"event": "chunk", "start", "end", "text" (the answer text released by this event),
  "judged_end" (answer characters judged so far), "tokens" (answer tokens judged so far),
  "risk_level", "category", "p_unsafe", "probabilities" (of the chunk's worst token),
  "first_unsafe_offset"}
- token (--per-token, instead of chunk): {"event": "token", "role": "assistant", "index",
  "start", "end", "text", "risk_level", "category", "p_unsafe", "probabilities"}
- summary: {"event": "summary", "prompt_risk_level", "risk_level", "category", "flagged",
  "first_unsafe_offset", "tokens", "chars", "released", "stopped"}

`hold_back` N: answer text is released only once its tokens are judged and N more tokens have
been; when the stream is flagged, nothing from the flagged pair on is released (with N >= 1 the
pair is never released at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from guardcli.families.qwen3guard_stream.stream import StreamJudge, TokenVerdict

Emit = Callable[[dict[str, Any]], None]
SEVERITY = {"Safe": 0, "Controversial": 1, "Unsafe": 2}


def _fields(v: TokenVerdict) -> dict[str, Any]:
    return {
        "risk_level": v.risk_level,
        "category": v.category,
        "p_unsafe": v.p_unsafe,
        "probabilities": v.probabilities,
    }


def run_stream(
    judge: StreamJudge,
    prompt: str,
    chunks: Iterable[bytes],
    emit: Emit,
    *,
    per_token: bool = False,
    hold_back: int = 0,
) -> dict[str, Any]:
    """Judge `chunks` (the answer's bytes as they arrive) after `prompt`; returns the summary
    (also emitted last). Stops reading at the first flag."""
    pv = judge.start(prompt)
    prompt_event = {"event": "prompt" if not per_token else "token", "role": "user"}
    emit({**prompt_event, **_fields(pv), "tokens": pv.index + 1})
    prompt_flagged = pv.risk_level == "Unsafe" or (judge.strict and pv.risk_level != "Safe")
    ends: list[int] = []  # answer end offset per judged token
    released = 0

    def publish(verdicts: list[TokenVerdict], final: bool) -> None:
        nonlocal released
        ends.extend(v.end for v in verdicts)
        flag = judge.flag_offset
        if flag is not None:
            upto = flag
        elif final:
            upto = len(judge.answer)
        else:
            upto = ends[-hold_back - 1] if len(ends) > hold_back else 0
        upto = max(upto, released)
        text = judge.answer[released:upto]
        start, released = released, upto
        if per_token:
            for v in verdicts:
                emit(
                    {
                        "event": "token",
                        "role": "assistant",
                        "index": v.index,
                        "start": v.start,
                        "end": v.end,
                        "text": v.text,
                        **_fields(v),
                    }
                )
            return
        if not verdicts and not text:
            return
        event: dict[str, Any] = {"event": "chunk", "start": start, "end": upto, "text": text}
        event.update(judged_end=ends[-1] if ends else 0, tokens=len(ends))
        if verdicts:
            worst = max(verdicts, key=lambda v: (SEVERITY[v.risk_level], v.p_unsafe))
            event.update(_fields(worst))
        event["first_unsafe_offset"] = flag
        emit(event)

    stopped = prompt_flagged
    if not prompt_flagged:
        for data in chunks:
            publish(judge.push_bytes(data), final=False)
            if judge.flagged:
                stopped = True
                break
        if not stopped:
            publish(judge.finish(), final=True)
    s = judge.state
    summary = {
        "event": "summary",
        "prompt_risk_level": pv.risk_level,
        "prompt_category": pv.category,
        "risk_level": s.risk_level,
        "category": s.category,
        "flagged": prompt_flagged or judge.flagged,
        "first_unsafe_offset": judge.flag_offset,
        "tokens": s.tokens,
        "chars": len(judge.answer),
        "released": released,
        "stopped": stopped,
    }
    emit(summary)
    return summary
