"""Many streams at once, for `guard serve`'s /v1/streams: what the family offers a server.

Each served stream (`SlotRunner`) keeps its KV cache with the token ids that built it. So a
server may drop a stream's cache (evict it) to bound its memory and rebuild it on the stream's
next use by re-running those ids with the new ones (one forward; the model is causal, so the
verdicts are those the kept cache would have given), and streams that append at the same time
share forwards (`forward_batch`). On the GroupQueryAttention graph the caches are rows of one
pool updated in place (pool.py: no cache is copied per forward); a graph exported before it,
with attention as plain ops, keeps one cache per stream, left-padded and masked in a padded
batch (`OnnxBatch`); the torch reference runs one stream at a time. The per-row INT8 recipe
keeps a row's numbers independent of its neighbours; in FP32 only summation order may differ
(verdicts equal, probabilities ~1e-6).

`ServedJudge` is the family's StreamJudge with what a server needs besides: a conversation
before the prompt, answers given as token ids, and `peek()` (what `finish()` would say now,
without finishing: the held-back tail judged, then rolled back).
"""

from __future__ import annotations

import codecs
import copy
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from guardcli.families.qwen3guard_stream.labels import (
    ANSWER_PREFIX,
)
from guardcli.families.qwen3guard_stream.pool import PAD_ID, PoolBatch
from guardcli.families.qwen3guard_stream.retokenize import Token
from guardcli.families.qwen3guard_stream.runners import Logits
from guardcli.families.qwen3guard_stream.stream import (
    StreamJudge,
    TokenVerdict,
)

Forward = Callable[["SlotRunner", list[int]], Logits]


class SlotRunner:
    """One served stream's runner: its cache (None once evicted) and the ids fed so far. `feed`
    hands the new ids to `forward` (the server's coalescer, which batches streams). On a
    GroupQueryAttention graph the cache is a row of the engine's pool (pool.CachePool), set by
    the batch that first runs the stream; otherwise arrays of its own."""

    def __init__(self, forward: Forward):
        self.forward = forward
        self.pool: Any = None
        self.row: int | None = None
        self.reset()

    def reset(self) -> None:
        self.release()
        self.past: list[np.ndarray] | None = None  # per layer key, value: [kv_heads, len, dim]
        self.ids: list[int] = []
        self.length = 0
        self.reprefills = 0

    def feed(self, ids: list[int]) -> Logits:
        return self.forward(self, list(ids))

    @property
    def cache_bytes(self) -> int:
        if self.row is not None:
            return int(self.pool.row_bytes)
        return sum(a.nbytes for a in self.past) if self.past is not None else 0

    def evict(self) -> int:
        """Drop the cache (kept: the ids that rebuild it); returns the bytes freed."""
        freed = self.cache_bytes
        self.past = None
        self.release()
        return freed

    def release(self) -> None:
        """Give the pool row back (the stream is prefilled into a row again on next use)."""
        row, self.row = self.row, None
        if row is not None:
            self.pool.release(row)

    def crop(self, length: int) -> None:
        """Forget every position from `length` on (a speculative feed rolled back; a pool row
        keeps them, overwritten by the next feed and never read before)."""
        self.ids = self.ids[:length]
        self.length = length
        if self.past is not None:
            self.past = [a[:, :length] for a in self.past]

    def to_run(self, ids: list[int]) -> tuple[list[np.ndarray] | None, list[int]]:
        """The cache to start from and the ids to run: after an eviction, every kept id too."""
        if self.past is None and self.ids:
            return None, self.ids + ids
        return self.past, ids

    def advance(self, ids: list[int], past: list[np.ndarray] | None, rebuilt: bool) -> None:
        self.ids += ids
        self.length = len(self.ids)
        self.past = past
        self.reprefills += rebuilt


class OnnxBatch:
    """Padded batches of streams on a graph exported before GroupQueryAttention (attention as
    plain ops: runners.OnnxRunner's session), each stream with its own cache, left-padded and
    masked in the batch's past (a GroupQueryAttention graph runs on a pool.PoolBatch)."""

    def __init__(self, runner: Any):
        self.runner = runner
        self.dtype = runner.dtype
        self.forwards: Counter[int] = Counter()  # streams per session run -> how many runs

    def __call__(self, items: Sequence[tuple[SlotRunner, list[int]]]) -> list[Logits]:
        r = self.runner
        plans = [slot.to_run(ids) for slot, ids in items]
        self.forwards[len(items)] += 1
        lengths = [0 if past is None else past[0].shape[1] for past, _ in plans]
        b, p, q = len(items), max(lengths), max(len(run) for _, run in plans)
        ids = np.full((b, q), PAD_ID, dtype=np.int64)
        mask = np.zeros((b, p + q), dtype=np.int64)
        pos = np.zeros((b, q), dtype=np.int64)
        for i, ((_, run), n) in enumerate(zip(plans, lengths, strict=True)):
            ids[i, : len(run)] = run
            mask[i, p - n : p + len(run)] = 1
            pos[i] = np.arange(n, n + q)
        past = []
        for k in range(len(r.past_names)):
            if b == 1 and plans[0][0] is not None:
                past.append(plans[0][0][k][None])  # one stream: its cache as it is
                continue
            layer = np.zeros((b, r.kv_heads, p, r.head_dim), dtype=self.dtype)
            for i, (cache, _) in enumerate(plans):
                if cache is not None:
                    layer[i, :, p - lengths[i] : p] = cache[k]
            past.append(layer)
        logits, present = r.run_batch(ids, mask, pos, past)
        out = []
        for i, ((slot, new), (cache, run), n) in enumerate(zip(items, plans, lengths, strict=True)):
            if b == 1 and n == p and len(run) == q:
                kept = [a[0] for a in present]  # the output is exactly this stream's cache
            else:
                kept = [np.ascontiguousarray(a[i, :, p - n : p + len(run)]) for a in present]
            slot.advance(new, kept, rebuilt=cache is None and len(run) > len(new))
            rows = slice(len(run) - len(new), len(run))
            out.append(tuple(np.asarray(x[i, rows], dtype=np.float32) for x in logits))
        return out  # type: ignore[return-value]


class TorchBatch:
    """The torch reference, one stream at a time (FP32; no padding)."""

    def __init__(self, runner: Any):
        self.module, self.torch = runner.module, runner.torch

    def __call__(self, items: Sequence[tuple[SlotRunner, list[int]]]) -> list[Logits]:
        from transformers import DynamicCache

        torch = self.torch
        out = []
        for slot, new in items:
            cache_arrays, run = slot.to_run(new)
            n = 0 if cache_arrays is None else cache_arrays[0].shape[1]
            if cache_arrays is None:
                cache = DynamicCache(config=self.module.config)
            else:
                pairs = [
                    (
                        torch.from_numpy(cache_arrays[2 * i][None]),
                        torch.from_numpy(cache_arrays[2 * i + 1][None]),
                    )
                    for i in range(len(cache_arrays) // 2)
                ]
                cache = DynamicCache(ddp_cache_data=pairs)
            with torch.no_grad():
                res = self.module(
                    input_ids=torch.tensor([run], dtype=torch.long),
                    position_ids=torch.arange(n, n + len(run))[None],
                    past_key_values=cache,
                    use_cache=True,
                )
            kept = []
            for layer in res.past_key_values.layers:
                kept += [layer.keys[0].numpy(), layer.values[0].numpy()]
            slot.advance(new, kept, rebuilt=cache_arrays is None and len(run) > len(new))
            rows = slice(len(run) - len(new), len(run))
            heads = (
                res.risk_level_logits,
                res.category_logits,
                res.query_risk_level_logits,
                res.query_category_logits,
            )
            out.append(tuple(h[0, rows].float().numpy() for h in heads))
        return out  # type: ignore[misc]


class ServedJudge(StreamJudge):
    """A StreamJudge on a SlotRunner, for a server."""

    runner: SlotRunner

    def start(self, prompt: str, history: Sequence[dict[str, str]] = ()) -> TokenVerdict:
        prompt_verdict = super().start(prompt, history)
        self._byte_decoder: Any = None
        return prompt_verdict

    def push_ids(self, ids: list[int]) -> list[TokenVerdict]:
        """Answer tokens as the generating model produced them (after the template's "\\n\\n"):
        each is final as it comes; its text is its bytes, decoded as UTF-8 across tokens."""
        retok = self.retok
        tokens = []
        if self._byte_decoder is None:
            self._byte_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            # The template's "\n\n" first: fed, not reported (it ends inside the prefix).
            first = self.tokenizer.encode(ANSWER_PREFIX, add_special_tokens=False).ids
            tokens += [Token(i, 0, len(ANSWER_PREFIX)) for i in first]
            retok.text = ANSWER_PREFIX
        for token_id in ids:
            start = len(retok.text)
            retok.text += self._byte_decoder.decode(token_bytes(self.tokenizer, token_id))
            tokens.append(Token(token_id, start, len(retok.text)))
        retok.committed = len(retok.text)
        return self._judge(tokens, final=False)

    def peek(self) -> tuple[list[TokenVerdict], dict[str, Any]]:
        """The verdicts `finish()` would add now and the decision they make, with the stream
        left as it was (cache and state rolled back): for a caller that must decide on text
        whose last piece may still change, such as LiteLLM's re-checks of a growing reply."""
        retok = self.retok
        saved = (
            copy.deepcopy(self.state),
            list(self._starts),
            list(self.ready),
            self.runner.length,
            (retok.text, retok.committed, retok.done, retok.decoder.getstate()),
        )
        try:
            verdicts = self._judge(retok._tokens(final=True), final=True)
            decision = {
                "flagged": self.flagged,
                "risk_level": self.state.risk_level,
                "category": self.state.category,
                "first_unsafe_offset": self.flag_offset,
                "tokens": self.state.tokens,
            }
        finally:
            self.state, self._starts, self.ready, length, text_state = saved
            retok.text, retok.committed, retok.done, decoder = text_state
            retok.decoder.setstate(decoder)
            self.runner.crop(length)
        return verdicts, decision


def token_bytes(tokenizer: Any, token_id: int) -> bytes:
    """A token's bytes: byte-level BPE pieces mapped back through GPT-2's byte alphabet, added
    (special) tokens as their text."""
    piece = tokenizer.id_to_token(token_id)
    if piece is None:
        raise ValueError(f"token id {token_id} is not in the vocabulary")
    table = _unicode_to_byte()
    if all(ch in table for ch in piece) and piece not in _added(tokenizer):
        return bytes(table[ch] for ch in piece)
    return piece.encode("utf-8")


_TABLE: dict[str, int] = {}


def _unicode_to_byte() -> dict[str, int]:
    if not _TABLE:
        printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
        extra = 0
        for b in range(256):
            if b in printable:
                _TABLE[chr(b)] = b
            else:
                _TABLE[chr(256 + extra)] = b
                extra += 1
    return _TABLE


def _added(tokenizer: Any) -> set[str]:
    cached = getattr(tokenizer, "_guard_added", None)
    if cached is None:
        cached = {t.content for t in tokenizer.get_added_tokens_decoder().values()}
        try:
            tokenizer._guard_added = cached
        except AttributeError:  # a Rust object may refuse new attributes
            pass
    return cached


class StreamEngine:
    """What a server needs to judge many streams on one loaded model: `judge(forward)` makes a
    ServedJudge on a new SlotRunner; `forward_batch` runs several streams' new ids at once."""

    def __init__(
        self,
        runner: Any,
        tokenizer: Any,
        maps: dict[str, dict[int, str]],
        *,
        strict: bool,
        max_tokens: int = 8192,
    ):
        self.forward_batch: Any
        if hasattr(runner, "module"):
            self.forward_batch = TorchBatch(runner)
        else:
            self.forward_batch = PoolBatch(runner) if runner.shared else OnnxBatch(runner)
        self.tokenizer, self.maps, self.strict = tokenizer, maps, strict
        self.max_tokens = max_tokens  # the model's context: a stream may not grow past it
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def count(self, text: str) -> int:
        """Tokens of `text` tokenized on its own (what a stream's unjudged text will cost)."""
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def judge(self, forward: Forward) -> ServedJudge:
        return ServedJudge(
            SlotRunner(forward), self.tokenizer, self.maps, chunk_tokens=0, strict=self.strict
        )
