"""The incremental engine: one conversation's prompt verdict, then a verdict per answer token
as text streams in, with the KV cache kept between chunks (a flat per-token cost).

Layout (spec §5, §6): the user turn `<|im_start|>user\\n{prompt}<|im_end|>` is prefilled with
the assistant header `\\n<|im_start|>assistant\\n<think>\\n\\n</think>`; the prompt's verdict is
the query heads at that <|im_end|>. The answer segment `\\n\\n{answer}` is re-tokenized as it
grows (retokenize.py); each final token is fed, k at a time, and judged by the response heads at
its own position. Answer token 0 is the first token that covers answer text.

Response decision (the official eval's `consecutive_unsafe`, spec §6): the answer is Unsafe at
the first token i where tokens i and i+1 are both Unsafe; failing that, Controversial at the first
two consecutive Controversial tokens; else Safe. `strict` flags Controversial too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from guardcli.families.qwen3guard_stream.labels import (
    ANSWER_PREFIX,
    ASSISTANT_HEADER,
    CONTROVERSIAL,
    UNSAFE,
    USER_TURN,
)
from guardcli.families.qwen3guard_stream.retokenize import IncrementalTokenizer, Token
from guardcli.families.qwen3guard_stream.runners import StreamRunner


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class TokenVerdict:
    role: str
    index: int  # assistant: 0 = the answer's first token; user: the prompt's token count - 1
    token_id: int
    start: int  # character offsets into the answer (user: into the prompt)
    end: int
    text: str
    risk_level: str
    category: str
    p_unsafe: float
    probabilities: dict[str, float]
    category_prob: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StreamState:
    """What the answer has been judged to be so far."""

    tokens: int = 0
    risk_level: str = "Safe"
    category: str | None = None
    first_unsafe_index: int | None = None
    first_unsafe_offset: int | None = None
    first_controversial_offset: int | None = None
    history: list[int] = field(default_factory=list)  # risk index per answer token


def verdict(
    role: str,
    index: int,
    token: Token,
    text: str,
    risk: np.ndarray,
    cat: np.ndarray,
    risk_map: dict[int, str],
    cat_map: dict[int, str],
) -> TokenVerdict:
    pr, pc = softmax(risk.astype(np.float64)), softmax(cat.astype(np.float64))
    r, c = int(pr.argmax()), int(pc.argmax())
    return TokenVerdict(
        role=role,
        index=index,
        token_id=token.id,
        start=token.start,
        end=token.end,
        text=text,
        risk_level=risk_map[r],
        category=cat_map[c],
        p_unsafe=round(float(pr[UNSAFE]), 6),
        probabilities={risk_map[i]: round(float(p), 6) for i, p in enumerate(pr)},
        category_prob=round(float(pc[c]), 6),
    )


class StreamJudge:
    """Judge one conversation: `start(prompt)` -> the prompt's verdict; `push(text)` /
    `push_bytes(data)` -> verdicts of the answer tokens that became final and were fed (in
    chunks of `chunk_tokens`; 0 = all that are ready); `finish()` -> the rest."""

    def __init__(
        self,
        runner: StreamRunner,
        tokenizer,
        maps: dict[str, dict[int, str]],
        *,
        chunk_tokens: int = 0,
        strict: bool = False,
    ):
        self.runner, self.tokenizer, self.maps = runner, tokenizer, maps
        self.chunk_tokens = chunk_tokens
        self.strict = strict

    def start(self, prompt: str, history: Sequence[dict[str, str]] = ()) -> TokenVerdict:
        """The prompt's verdict, after the turns in `history` ({"role", "content"}), rendered
        by Qwen3's chat template as guard classify renders a conversation."""
        before = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in history)
        self.runner.reset()
        tok = self.tokenizer
        user = tok.encode(before + USER_TURN.format(prompt=prompt), add_special_tokens=False).ids
        header = tok.encode(ASSISTANT_HEADER, add_special_tokens=False).ids
        _, _, qrisk, qcat = self.runner.feed(user + header)
        end = len(user) - 1
        self.prompt_verdict = verdict(
            "user",
            end,
            Token(user[-1], 0, len(prompt)),
            prompt,
            qrisk[end],
            qcat[end],
            self.maps["query_risk_level_map"],
            self.maps["query_category_map"],
        )
        self.retok = IncrementalTokenizer(tok, ANSWER_PREFIX)
        self.ready: list[Token] = []
        self.state = StreamState()
        self._starts: list[int] = []
        return self.prompt_verdict

    @property
    def answer(self) -> str:
        return self.retok.text[len(ANSWER_PREFIX) :]

    def push(self, text: str) -> list[TokenVerdict]:
        return self._judge(self.retok.push(text), final=False)

    def push_bytes(self, data: bytes) -> list[TokenVerdict]:
        return self._judge(self.retok.push_bytes(data), final=False)

    def finish(self) -> list[TokenVerdict]:
        return self._judge(self.retok.finish(), final=True)

    def _judge(self, tokens: list[Token], *, final: bool) -> list[TokenVerdict]:
        self.ready += tokens
        k = self.chunk_tokens or max(1, len(self.ready))
        out: list[TokenVerdict] = []
        while len(self.ready) >= k or (final and self.ready):
            chunk, self.ready = self.ready[:k], self.ready[k:]
            risk, cat, _, _ = self.runner.feed([t.id for t in chunk])
            for j, token in enumerate(chunk):
                if token.end <= len(ANSWER_PREFIX):
                    continue  # the header's "\n\n": fed, not reported
                out.append(self._answer_verdict(token, risk[j], cat[j]))
        return out

    def _answer_verdict(self, token: Token, risk: np.ndarray, cat: np.ndarray) -> TokenVerdict:
        n = len(ANSWER_PREFIX)
        start, end = max(token.start - n, 0), token.end - n
        v = verdict(
            "assistant",
            self.state.tokens,
            Token(token.id, start, end),
            self.answer[start:end],
            risk,
            cat,
            self.maps["response_risk_level_map"],
            self.maps["response_category_map"],
        )
        self._update(v)
        return v

    def _update(self, v: TokenVerdict) -> None:
        s = self.state
        r = {name: i for i, name in self.maps["response_risk_level_map"].items()}[v.risk_level]
        prev = s.history[-1] if s.history else None
        s.history.append(r)
        self._starts.append(v.start)
        s.tokens += 1
        if prev != r or r not in (UNSAFE, CONTROVERSIAL):
            return
        at = self._starts[v.index - 1]  # the pair starts at the previous token
        if r == UNSAFE and s.first_unsafe_offset is None:
            s.first_unsafe_index, s.first_unsafe_offset = v.index - 1, at
            s.risk_level, s.category = "Unsafe", v.category
        elif r == CONTROVERSIAL and s.first_controversial_offset is None:
            s.first_controversial_offset = at
            if s.risk_level == "Safe":
                s.risk_level, s.category = "Controversial", v.category

    @property
    def flagged(self) -> bool:
        """The answer is to be cut: Unsafe (Controversial too when strict)."""
        return self.flag_offset is not None

    @property
    def flag_offset(self) -> int | None:
        """Where the first flagged pair of tokens starts in the answer, or None."""
        s = self.state
        if self.strict and s.first_controversial_offset is not None:
            if s.first_unsafe_offset is None:
                return s.first_controversial_offset
            return min(s.first_unsafe_offset, s.first_controversial_offset)
        return s.first_unsafe_offset
