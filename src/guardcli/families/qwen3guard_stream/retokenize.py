"""Any text in, Qwen3 tokens out, incrementally, with the tokens a one-shot tokenization of the
whole text would give.

Qwen3's tokenizer splits text into pieces with a regex that has no look-behind, then
byte-pair-encodes each piece on its own. So the pieces of text[p:] are those of the whole text
from p on whenever p starts a piece of the whole text. Text that arrives later can only change
the last piece: every earlier match ended at a character that is already there (its one-character
look-ahead included), and NFC composition only changes the last character. A letter run, a
whitespace run, "'" before "s", a digit group or an "é" being composed all sit in the last piece.
One exception: a run of whitespace at the end may be split into several pieces ("\\n", " ") that
merge when a newline follows ("\\n \\n"), so such a run is held back whole. Every other piece
but the last is final, and the tail is re-tokenized from the start of what is held.
At the end of the text every token is. (The Hypothesis tests split texts at random, in
characters and in UTF-8 bytes, and fail with HOLD_PIECES = 0.)
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

HOLD_PIECES = 1


@dataclass(frozen=True)
class Token:
    id: int
    start: int  # character offsets into the tokenized text
    end: int


class IncrementalTokenizer:
    """Feed text pieces; get back the tokens that became final, each once, in order.
    `prefix` is text that precedes the stream in the same tokenizer segment (offsets count
    from the start of the prefix)."""

    def __init__(self, tokenizer, prefix: str = ""):
        self.tokenizer = tokenizer
        self.text = prefix
        self.committed = 0  # the character offset where the unfinal pieces start
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.done = False

    def push_bytes(self, data: bytes) -> list[Token]:
        """Bytes in any split (a UTF-8 character may straddle two pieces)."""
        return self.push(self.decoder.decode(data))

    def push(self, text: str) -> list[Token]:
        if self.done:
            raise ValueError("the stream is finished")
        self.text += text
        return self._tokens(final=False)

    def finish(self) -> list[Token]:
        """Every token left: the text is complete."""
        self.text += self.decoder.decode(b"", final=True)
        tokens = self._tokens(final=True)
        self.done = True
        return tokens

    def _tokens(self, *, final: bool) -> list[Token]:
        base = self.committed
        if base >= len(self.text):
            return []
        enc = self.tokenizer.encode(self.text[base:], add_special_tokens=False)
        pieces = _pieces(enc.word_ids)
        if final:
            keep = len(enc.ids)
        else:
            held = _held_from(pieces, enc.offsets, self.text[base:])
            keep = sum(1 for p in pieces if p < held)
        out = [
            Token(int(i), base + s, base + e)
            for i, (s, e) in zip(enc.ids[:keep], enc.offsets[:keep], strict=True)
        ]
        self.committed = len(self.text) if final else base + _start_of(enc.offsets, keep, base)
        return out

    @property
    def pending(self) -> str:
        """Text received but not yet in a final token."""
        return self.text[self.committed :]


def _pieces(word_ids: list[int | None]) -> list[int]:
    """A piece number per token: the pre-tokenizer's word index, added tokens (None) on their
    own; increasing along the text."""
    out, seen, n = [], {}, -1
    for w in word_ids:
        if w is None or w not in seen:
            n += 1
            if w is not None:
                seen[w] = n
        out.append(n if w is None else seen[w])
    return out


def _held_from(pieces: list[int], offsets: list[tuple[int, int]], text: str) -> int:
    """The first piece that is not final yet: the last HOLD_PIECES, and before them every piece
    of a whitespace run that reaches the end (`\\s*[\\r\\n]+` takes a whole run of whitespace
    ending in a newline: "\\n", " " become one piece "\\n \\n" when "\\n" follows)."""
    if not pieces:
        return 0
    spans: dict[int, tuple[int, int]] = {}
    for piece, (start, end) in zip(pieces, offsets, strict=True):
        first, last = spans.get(piece, (start, end))
        spans[piece] = (min(first, start), max(last, end))
    held = pieces[-1] - HOLD_PIECES + 1
    if held in spans and text[spans[held][0] :].isspace():
        while held - 1 in spans and text[slice(*spans[held - 1])].isspace():
            held -= 1
    return held


def _start_of(offsets: list[tuple[int, int]], keep: int, base: int) -> int:
    """Where the first unfinal token's piece starts, relative to `base`."""
    if keep == 0:
        return 0
    if keep < len(offsets):
        return offsets[keep][0]
    return offsets[keep - 1][1]
