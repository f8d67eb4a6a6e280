"""Causal language models run locally: greedy decoding and next-token logits.

Two backends with one interface: `TorchCausalLM` (transformers, the reference) and
`OnnxCausalLM` (onnxruntime on a graph with KV cache, exported by `runtime.causal_onnx`).
Graphs with GroupQueryAttention run right-padded with their cache in place (runtime.kv_buffers);
graphs exported before it (eager attention) run left-padded, so the last column is every row's
last real token, their present outputs fed back as the past.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np

from guardcli.core.cpu import usable_cpus
from guardcli.core.errors import GuardError, missing_extra
from guardcli.runtime.gqa import uses_gqa
from guardcli.runtime.kv_buffers import BoundCache, right_pad

MAX_NEW_TOKENS = 128
MIN_PREFIX = 16


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, attention_mask) as int64, padded on the left."""
    width = max(len(s) for s in sequences)
    ids = np.full((len(sequences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = seq
            mask[row, width - len(seq) :] = 1
    return ids, mask


def positions(mask: np.ndarray) -> np.ndarray:
    return np.clip(np.cumsum(mask, axis=1) - 1, 0, None).astype(np.int64)


def stop_ids(model_dir: Path) -> tuple[int, list[int]]:
    """(pad id, EOS ids) from generation_config.json, else config.json; pad = the first EOS,
    as the reference decoding sets it."""
    eos: list[int] = []
    for name in ("generation_config.json", "config.json"):
        path = Path(model_dir) / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
            if isinstance(value, int):
                value = [value]
            if isinstance(value, list):
                eos = [int(v) for v in value if isinstance(v, int)]
            if eos:
                break
    if not eos:
        raise GuardError(f"{model_dir} names no eos_token_id (generation_config.json).")
    return eos[0], eos


def known_heads(prefixes: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Template heads worth a kept KV cache (MIN_PREFIX tokens or more), longest first."""
    heads = {tuple(p) for p in prefixes if len(p) >= MIN_PREFIX}
    return sorted(heads, key=len, reverse=True)


def shared_head(heads: list[tuple[int, ...]], prompts: list[list[int]]) -> tuple[int, ...] | None:
    """The longest of `heads` that every prompt starts with and goes past."""
    for head in heads:
        n = len(head)
        if all(len(p) > n and tuple(p[:n]) == head for p in prompts):
            return head
    return None


class TorchCausalLM:
    """transformers' AutoModelForCausalLM; `generate` is the reference greedy decoding."""

    def __init__(self, model_dir: Path, *, threads: int | None = None, dtype: str = "auto"):
        try:
            import torch
            from transformers import AutoModelForCausalLM
        except ImportError as exc:
            raise missing_extra("export", "The torch backend") from exc
        torch.set_num_threads(threads or usable_cpus())
        self.torch = torch
        self.pad_id, self.eos_ids = stop_ids(model_dir)
        try:
            self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype).eval()
        except Exception as exc:
            raise GuardError(f"transformers could not load {model_dir}: {exc}") from exc

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        torch = self.torch
        ids, mask = left_pad(prompts, self.pad_id)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                do_sample=False,
                max_new_tokens=max_new_tokens,
                pad_token_id=self.pad_id,
                eos_token_id=self.eos_ids,
            )
        return [_until_eos(row.tolist(), self.eos_ids) for row in out[:, ids.shape[1] :]]

    def next_logits(self, prompts: list[list[int]]) -> np.ndarray:
        """Logits of the token after each prompt: [batch, vocab] float32."""
        torch = self.torch
        ids, mask = left_pad(prompts, self.pad_id)
        with torch.no_grad():
            logits = self.model(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                position_ids=torch.from_numpy(positions(mask)),
                logits_to_keep=1,
            ).logits
        return logits[:, -1].float().numpy()

    def score_logits(
        self, prompts: list[list[int]], ids: Sequence[int], *, own_head: bool = True
    ) -> np.ndarray:
        """`next_logits(prompts)[:, ids]` (the same interface as OnnxCausalLM's)."""
        return self.next_logits(prompts)[:, list(ids)]


def _until_eos(tokens: list[int], eos: list[int]) -> list[int]:
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[: i + 1]
    return tokens


class OnnxCausalLM:
    """onnxruntime on a causal LM graph with KV cache (inputs input_ids, attention_mask,
    position_ids, past_key_values.N.key/value; outputs logits of the last position and
    present.N.key/value); greedy decoding in numpy.

    `prefixes`: token heads many prompts start with (a chat template's text before the
    content). The first batch whose every prompt starts with one computes that head's KV cache
    once; later batches start from it and run only their tails, left-padded after the head. A
    key or value of a head token depends on the head alone, so the result is the same as
    running the whole prompt."""

    def __init__(
        self,
        graph: Path,
        model_dir: Path,
        *,
        threads: int | None = None,
        prefixes: Sequence[Sequence[int]] = (),
    ):
        from guardcli.runtime.int8_rows import PerRowGraph
        from guardcli.runtime.onnx_session import cache_enabled

        # A per-tensor dynamic-INT8 graph is rewritten per row, or run a prompt at a time.
        self.graph = PerRowGraph(Path(graph), cache=cache_enabled())
        self.rows_alone = self.graph.rows_alone
        self.threads = threads or usable_cpus()
        self.path = Path(graph)
        # GroupQueryAttention: the cache stays in preallocated buffers (runtime.kv_buffers).
        self.in_place = uses_gqa(self.graph.path)
        self.pad_id, self.eos_ids = stop_ids(model_dir)
        self.prefixes = known_heads(prefixes)
        # Both heads (full vocabulary, restricted) run on the same trunk: one cache serves both.
        self.prefix_kv: dict[tuple[int, ...], list[np.ndarray]] = {}
        # Graphs whose head computes only some token ids' logits, by ids (None: not derivable).
        self.score_sessions: dict[tuple[int, ...], object | None] = {}

    @cached_property
    def session(self):
        """The graph with its full-vocabulary head, loaded on first use (score mode alone may
        never need it)."""
        return self._load(self.graph.path)

    def _load(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise GuardError(f"onnxruntime could not load {self.path}: {exc}") from exc
        inputs = {i.name: i for i in session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        self.present_names = [o.name for o in session.get_outputs()][1:]
        if not self.past_names or len(self.past_names) != len(self.present_names):
            raise GuardError(
                f"{self.path.name} is not a causal LM graph with KV cache.",
                hint="Export one with `guard synth qwen3guard-gen` or convert.causal_onnx.",
            )
        shape = inputs[self.past_names[0]].shape
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.dtype = np.float16 if "float16" in inputs[self.past_names[0]].type else np.float32
        return session

    def _run(self, ids, mask, pos, past, session=None):
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        feed.update(zip(self.past_names, past, strict=True))
        try:
            logits, *present = (session or self.session).run(None, feed)
        except Exception as exc:
            raise GuardError(f"onnxruntime failed on {self.path.name}: {exc}") from exc
        return logits, present

    def _empty(self, batch: int) -> list[np.ndarray]:
        empty = np.zeros((batch, self.kv_heads, 0, self.head_dim), dtype=self.dtype)
        return [empty] * len(self.past_names)

    def shared_prefix(self, prompts: list[list[int]]) -> tuple[int, ...] | None:
        return shared_head(self.prefixes, prompts)

    def _cache(self, session, batch: int, capacity: int) -> BoundCache:
        shape = (self.kv_heads, capacity, self.head_dim)
        names = (self.past_names, self.present_names)
        return BoundCache(session, names, shape, self.dtype, batch)

    def _prefill_in_place(
        self, prompts: list[list[int]], session, extra: int = 0
    ) -> tuple[np.ndarray, BoundCache]:
        """Logits after each prompt and the cache holding the prompts, with room for `extra`
        more positions. A known head's KV is computed once; each row then runs only its tail
        (one row per call: the op takes a batch of continuations only when all are one token
        long)."""
        batch, longest = len(prompts), max(len(p) for p in prompts)
        head = self.shared_prefix(prompts)
        if head is None:
            cache = self._cache(session, batch, longest + extra)
            ids, lengths = right_pad(prompts, self.pad_id)
            return cache.run(ids, lengths), cache
        n = len(head)
        if head not in self.prefix_kv:
            first = self._cache(session, 1, n)
            first.run(np.array([head], dtype=np.int64), np.array([n]))
            self.prefix_kv[head] = first.head()
        cache = self._cache(session, batch, longest + extra)
        cache.fill(self.prefix_kv[head])
        rows = []
        for row, prompt in enumerate(prompts):
            tail = np.array([prompt[n:]], dtype=np.int64)
            rows.append(cache.run(tail, np.array([tail.shape[1]]), slice(row, row + 1)))
        return np.concatenate(rows), cache

    def _prefill(self, prompts: list[list[int]], session=None):
        session = session or self.session
        if self.in_place:
            logits, _ = self._prefill_in_place(prompts, session)
            return logits, None, None
        head = self.shared_prefix(prompts)
        if head is None:
            ids, mask = left_pad(prompts, self.pad_id)
            empty = self._empty(len(prompts))
            logits, present = self._run(ids, mask, positions(mask), empty, session)
            return logits, present, mask
        n, batch = len(head), len(prompts)
        cached = self.prefix_kv.get(head)
        if cached is None:
            ids = np.array([head], dtype=np.int64)
            _, cached = self._run(
                ids, np.ones_like(ids), positions(np.ones_like(ids)), self._empty(1), session
            )
            self.prefix_kv[head] = cached
        tails, tail_mask = left_pad([p[n:] for p in prompts], self.pad_id)
        mask = np.concatenate([np.ones((batch, n), dtype=np.int64), tail_mask], axis=1)
        past = [np.repeat(kv, batch, axis=0) for kv in cached]
        logits, present = self._run(tails, mask, n + positions(tail_mask), past, session)
        return logits, present, mask

    def next_logits(self, prompts: list[list[int]]) -> np.ndarray:
        if self.rows_alone and len(prompts) > 1:
            return np.concatenate([self.next_logits([p]) for p in prompts])
        return self._prefill(prompts)[0].astype(np.float32)

    def score_session(self, ids: Sequence[int]):
        """A session on this graph with its head restricted to `ids` (runtime.score_head),
        made once; None where the head cannot be restricted."""
        key = tuple(int(i) for i in ids)
        if key not in self.score_sessions:
            from guardcli.runtime.score_head import score_graph

            try:
                path = score_graph(self.graph.path, key)
            except ImportError:  # no `onnx` package: the full head serves
                path = None
            self.score_sessions[key] = None if path is None else self._load(path)
        return self.score_sessions[key]

    def score_logits(
        self, prompts: list[list[int]], ids: Sequence[int], *, own_head: bool = True
    ) -> np.ndarray:
        """Logits of token `ids` after each prompt: [batch, len(ids)] float32, equal to
        `next_logits(prompts)[:, ids]`. With `own_head`, a graph computing only those columns
        runs (skipping the vocabulary projection; one more session in memory)."""
        if self.rows_alone and len(prompts) > 1:
            return np.concatenate([self.score_logits([p], ids, own_head=own_head) for p in prompts])
        session = self.score_session(ids) if own_head else None
        if session is None:
            return self.next_logits(prompts)[:, list(ids)]
        return self._prefill(prompts, session)[0].astype(np.float32)

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        if self.rows_alone and len(prompts) > 1:
            return [self.generate([p], max_new_tokens)[0] for p in prompts]
        if self.in_place:
            return self._generate_in_place(prompts, max_new_tokens)
        logits, past, mask = self._prefill(prompts)
        pos = positions(mask)[:, -1:]

        def step(nxt: np.ndarray) -> np.ndarray:
            nonlocal mask, pos, past
            mask = np.concatenate([mask, np.ones((len(prompts), 1), dtype=np.int64)], axis=1)
            pos = pos + 1
            logits, past = self._run(nxt[:, None], mask, pos, past)
            return logits

        return self._greedy(logits, len(prompts), max_new_tokens, step)

    def _greedy(self, logits, rows: int, max_new_tokens: int, step) -> list[list[int]]:
        """Greedy tokens per row from the prefill's `logits`, `step(next ids)` giving the next
        logits, until every row has emitted EOS or `max_new_tokens` (a finished row is fed
        padding, its output unread)."""
        out: list[list[int]] = [[] for _ in range(rows)]
        done = np.zeros(rows, dtype=bool)
        for n in range(max_new_tokens):
            nxt = logits.argmax(axis=-1).astype(np.int64)
            nxt[done] = self.pad_id
            for row in np.flatnonzero(~done):
                out[row].append(int(nxt[row]))
                done[row] = int(nxt[row]) in self.eos_ids
            if done.all() or n == max_new_tokens - 1:
                break
            logits = step(nxt)
        return out

    def _generate_in_place(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy decoding on the bound cache: each step runs one token per row and writes
        only its keys and values (a finished row keeps decoding padding, unread)."""
        logits, cache = self._prefill_in_place(prompts, self.session, extra=max_new_tokens)
        one = np.ones(len(prompts), dtype=np.int64)
        return self._greedy(
            logits, len(prompts), max_new_tokens, lambda nxt: cache.run(nxt[:, None], one)
        )
