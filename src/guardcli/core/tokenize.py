"""The fast tokenizer a model ships (`tokenizer.json`), with truncation bookkeeping."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError
from guardcli.core.timings import record


@dataclass
class Encoded:
    ids: list[int]
    truncated: bool
    record: Any = None  # the Record it came from, for families that need more than ids


class TextTokenizer:
    """Wraps `tokenizers.Tokenizer`: batch encoding with truncation to `max_length`."""

    def __init__(self, model_dir: Path, max_length: int, *, truncation_side: str = "right"):
        import time

        from tokenizers import Tokenizer

        start = time.perf_counter()
        path = Path(model_dir) / "tokenizer.json"
        if not path.exists():
            raise GuardError(
                f"No tokenizer.json in {model_dir}.",
                hint="A model folder needs tokenizer.json next to its onnx/ folder.",
            )
        try:
            self.tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:
            raise GuardError(f"Cannot read {path}: {exc}") from exc
        self.max_length = max_length
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_length, direction=truncation_side)
        self.pad_id = self._pad_id(Path(model_dir))
        record("tokenizer load", time.perf_counter() - start)

    def _pad_id(self, model_dir: Path) -> int:
        """Pad id from tokenizer_config.json's pad_token, else config.json, else EOS-ish, else 0.
        With an attention mask its value never changes a score."""
        cfg = model_dir / "tokenizer_config.json"
        if cfg.exists():
            pad = json.loads(cfg.read_text(encoding="utf-8")).get("pad_token")
            if isinstance(pad, dict):
                pad = pad.get("content")
            if isinstance(pad, str) and (tid := self.tokenizer.token_to_id(pad)) is not None:
                return tid
        config = model_dir / "config.json"
        if config.exists():
            pid = json.loads(config.read_text(encoding="utf-8")).get("pad_token_id")
            if isinstance(pid, int):
                return pid
        tid = self.tokenizer.token_to_id("<|endoftext|>")
        return tid if tid is not None else 0

    def encode(self, texts: list[str]) -> list[Encoded]:
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=True)
        return [Encoded(e.ids, bool(e.overflowing)) for e in encodings]
