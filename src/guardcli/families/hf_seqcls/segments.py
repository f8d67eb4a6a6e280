"""`--long segments`: a text longer than the model's window is judged whole, window by window.

The text is tokenized once, without truncation, and cut into windows of `max_length` tokens
(the model's special tokens included, added to every window by the tokenizer's own template),
consecutive windows sharing `overlap` tokens so that nothing is judged only at a window's edge.
Unlike Prompt Guard's inference utility, windows are not decoded and tokenized again: each window
is the exact token ids of that span of the text, and its character offsets say which span.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.tokenize import Encoded, TextTokenizer

LONG_MODES = ("truncate", "segments")
# Tokens shared by consecutive windows: a 512-token window shares 64 (granite-guardian-hap's
# recipe), a small window an eighth of itself.
DEFAULT_OVERLAP = 64


def check_long(mode: str) -> str:
    if mode not in LONG_MODES:
        raise GuardError(
            f"--long {mode!r} is not a way to judge long inputs.",
            hint=f"Choose one of: {', '.join(LONG_MODES)}.",
            code=ExitCode.INPUT,
        )
    return mode


@dataclass
class Window:
    """One window of a text: its token ids and the characters [start, end) it covers."""

    enc: Encoded
    start: int
    end: int
    index: int
    count: int

    def where(self) -> dict[str, int]:
        return {"index": self.index, "count": self.count, "start": self.start, "end": self.end}


def default_overlap(max_length: int, specials: int) -> int:
    content = max_length - specials
    return max(0, min(DEFAULT_OVERLAP, content // 8))


class Segmenter:
    """The model's tokenizer, truncating into overlapping windows instead of dropping the rest."""

    def __init__(self, model_dir: Path, max_length: int, overlap: int | None = None):
        self.base = TextTokenizer(model_dir, max_length)
        tok = self.base.tokenizer
        processor = tok.post_processor
        specials = processor.num_special_tokens_to_add(False) if processor is not None else 0
        if max_length - specials < 1:
            raise GuardError(
                f"--max-length {max_length} leaves no room for text beside the model's "
                f"{specials} special tokens.",
                code=ExitCode.INPUT,
            )
        if overlap is None:
            overlap = default_overlap(max_length, specials)
        if not 0 <= overlap < max_length - specials:
            raise GuardError(
                f"A segment overlap of {overlap} tokens must be below the {max_length - specials} "
                "tokens of text a window holds.",
                code=ExitCode.INPUT,
            )
        self.overlap = overlap
        self.max_length = max_length
        tok.enable_truncation(max_length=max_length, stride=overlap, direction="right")
        self.tokenizer = tok

    def windows(self, texts: list[str]) -> list[list[Window]]:
        """Every text's windows, in order (one window for a text that fits)."""
        out: list[list[Window]] = []
        for encoding in self.tokenizer.encode_batch(texts, add_special_tokens=True):
            parts = [encoding, *encoding.overflowing]
            spans = []
            for part in parts:
                marks = zip(part.offsets, part.special_tokens_mask, strict=True)
                offsets = [o for o, special in marks if not special]
                spans.append((offsets[0][0], offsets[-1][1]) if offsets else (0, 0))
            out.append(
                [
                    Window(Encoded(list(p.ids), False), s, e, i, len(parts))
                    for i, (p, (s, e)) in enumerate(zip(parts, spans, strict=True))
                ]
            )
        return out
