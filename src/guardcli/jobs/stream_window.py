"""`guard stream` for a family without token heads: a windowed re-check.

A classifier that judges a whole text (CSAM-Guard, a Hugging Face text classifier,
Qwen3Guard-Gen, ...) cannot say which token of an answer turned it unsafe. Streamed through
`guard stream`, it re-judges the answer in windows instead: every `window` new characters, the
text from `overlap` characters before them to their end is judged as one record (after the
prompt, as a response, for families that read a dialogue). Text is released only once a window
that covers it has been judged. This is labelled in every event (`"mode": "window"`): it is a
re-check of overlapping pieces, not the token-level verdicts of a streaming family, and content
split across two windows wider than `overlap` apart is judged only in pieces.

Events (one JSON object per line):
- prompt: {"event": "prompt", "mode": "window", "role": "user", "flagged", "score", "label",
  "categories", "severity"} (or "error")
- window: {"event": "window", "mode": "window", "index", "start", "end" (the new answer text this
  window judged and, unless flagged, releases), "text" (released), "window_start" (where the
  judged text began, overlap included), "flagged", "score", "label", "categories", "severity"}
- summary: {"event": "summary", "mode": "window", "prompt_flagged", "flagged", "flagged_window"
  ([start, end] of the first flagged window, or null), "windows", "chars", "released",
  "stopped", "error" (the first error, or null)}

Fail closed: a window the guard cannot judge (an error verdict) stops the stream like a flag,
releases nothing of it, and exits with the error's code.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.verdicts import Record, Verdict
from guardcli.families import Guard
from guardcli.jobs.classify import Summary

Emit = Callable[[dict[str, Any]], None]
WINDOW = 400
OVERLAP = 200
_FIELDS = ("flagged", "score", "label", "categories", "severity")


def _fields(v: Verdict) -> dict[str, Any]:
    if v.error is not None:
        return {"flagged": v.flagged, "error": v.error.to_dict()}
    return {name: getattr(v, name) for name in _FIELDS}


def check_window(window: int, overlap: int) -> None:
    if window < 1:
        raise GuardError(
            f"--window must be at least 1 character, not {window}.",
            hint="Pass the number of new answer characters each re-check judges, e.g. 400.",
            code=ExitCode.INPUT,
        )
    if overlap < 0:
        raise GuardError(
            f"--overlap must be 0 or more characters, not {overlap}.",
            hint="Pass how many already-judged characters each window repeats, e.g. 200.",
            code=ExitCode.INPUT,
        )


@dataclass
class WindowedStream:
    """A loaded classifier that `guard stream` runs window by window."""

    guard: Guard
    window: int = WINDOW
    overlap: int = OVERLAP

    def __post_init__(self) -> None:
        check_window(self.window, self.overlap)

    @property
    def name(self) -> str:
        return str(self.guard.name)

    @property
    def variant(self) -> str:
        return str(self.guard.variant)

    def _judge(self, n: int, prompt: str, answer: str | None) -> Verdict:
        if getattr(self.guard, "accepts_messages", False):
            messages = [{"role": "user", "content": prompt}]
            if answer is not None:
                messages.append({"role": "assistant", "content": answer})
            record = Record(id=n, messages=messages)
        else:
            record = Record(id=n, text=prompt if answer is None else answer)
        return self.guard.classify_records([record])[0]

    def run(
        self,
        prompt: str,
        chunks: Iterable[bytes],
        emit: Emit,
        *,
        per_token: bool = False,
        hold_back: int = 0,
    ) -> dict[str, Any]:
        """Judge the prompt, then the answer's `chunks` (bytes as they arrive) in windows;
        returns the summary (also emitted last). Stops reading at the first flag or error."""
        if per_token or hold_back:
            raise GuardError(
                "--per-token and --hold-back need a family with token-level heads.",
                hint="Drop them: the windowed re-check releases text once a window covering "
                "it is judged.",
                code=ExitCode.INPUT,
            )
        tally = Summary()
        pv = self._judge(0, prompt, None)
        tally.add([pv])
        emit({"event": "prompt", "mode": "window", "role": "user", **_fields(pv)})
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, judged, windows = "", 0, 0
        flagged_window: list[int] | None = None
        stopped = bool(pv.flagged) or pv.error is not None
        first_error = pv.error

        def check(end: int) -> bool:
            """Judge text[judged:end] with its overlap; False when the stream must stop."""
            nonlocal judged, windows, flagged_window, first_error
            start = max(0, min(judged - self.overlap, end - self.window - self.overlap))
            v = self._judge(windows + 1, prompt, text[start:end])
            tally.add([v])
            bad = bool(v.flagged) or v.error is not None
            event = {"event": "window", "mode": "window", "index": windows, "start": judged}
            event.update(end=end, text="" if bad else text[judged:end], window_start=start)
            emit({**event, **_fields(v)})
            windows += 1
            if bad:
                flagged_window = [start, end]
                first_error = first_error or v.error
                return False
            judged = end
            return True

        if not stopped:
            for data in chunks:
                text += decoder.decode(data)
                while len(text) - judged >= self.window:
                    if not check(judged + self.window):
                        stopped = True
                        break
                if stopped:
                    break
            if not stopped:
                text += decoder.decode(b"", final=True)
                if len(text) > judged and not check(len(text)):
                    stopped = True
        summary = {
            "event": "summary",
            "mode": "window",
            "prompt_flagged": bool(pv.flagged),
            "flagged": tally.flagged > 0,
            "flagged_window": flagged_window,
            "windows": windows,
            "chars": len(text),
            "released": judged,
            "stopped": stopped,
            "error": first_error.to_dict() if first_error is not None else None,
            "exit_code": int(tally.exit_code),
        }
        emit(summary)
        return summary
