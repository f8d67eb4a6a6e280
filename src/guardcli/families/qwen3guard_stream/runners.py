"""One stream's forward passes with its KV cache: the torch reference or onnxruntime.

`feed(ids)` runs only the new tokens on top of the cache and returns the four logit arrays of
those positions ([len(ids), classes] float32, in the order of export.LOGIT_OUTPUTS). The model
is causal, so a position's logits do not depend on how the tokens before it were chunked.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from guardcli.core.cpu import usable_cpus
from guardcli.core.errors import GuardError, missing_extra

Logits = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
BUFFER_STEP = 256  # KV buffers are allocated in multiples of this many positions


class StreamRunner(Protocol):
    length: int

    def feed(self, ids: list[int]) -> Logits: ...

    def reset(self) -> None: ...

    def crop(self, length: int) -> None: ...


class TorchRunner:
    """The reference module with a transformers DynamicCache (FP32)."""

    def __init__(self, model_dir: Path, *, threads: int | None = None, module=None):
        from guardcli.families.qwen3guard_stream.reference import _torch, load_reference

        self.torch = _torch()
        if threads:
            self.torch.set_num_threads(threads)
        self.module = module if module is not None else load_reference(Path(model_dir))
        self.reset()

    def reset(self) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.module.config)
        self.length = 0

    def crop(self, length: int) -> None:
        """Forget every position from `length` on."""
        self.cache.crop(length)
        self.length = min(self.length, length)

    def feed(self, ids: list[int]) -> Logits:
        torch = self.torch
        q = len(ids)
        with torch.no_grad():
            out = self.module(
                input_ids=torch.tensor([ids], dtype=torch.long),
                position_ids=torch.arange(self.length, self.length + q)[None],
                past_key_values=self.cache,
                use_cache=True,
            )
        self.length += q
        return (
            out.risk_level_logits[0].float().numpy(),
            out.category_logits[0].float().numpy(),
            out.query_risk_level_logits[0].float().numpy(),
            out.query_category_logits[0].float().numpy(),
        )


class OnnxRunner:
    """onnxruntime on the exported graph (export.py): FP32, FP16 (its cache FP16 too) or per-row
    INT8.

    The cache lives in one preallocated buffer per layer and kind, [1, kv_heads, capacity,
    head_dim], bound as both the past input and the present output of GroupQueryAttention, which
    writes only the new positions into it: a call costs the new tokens' work and attention's
    reads, never a copy of the cache (~0.9 GB per call at 4,096 tokens of 0.6B context). The
    buffer doubles when full (one copy per doubling). A graph exported before GroupQueryAttention
    (attention as plain ops) is run the old way, its present outputs fed back as the past."""

    def __init__(self, graph: Path, *, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise missing_extra("onnx", "The ONNX runtime") from exc
        self.ort = ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or usable_cpus()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(graph), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise GuardError(f"onnxruntime could not load {graph}: {exc}") from exc
        self.path = Path(graph)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [n for n in inputs if n.startswith("past_key_values.")]
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_names = outputs
        if outputs[:1] != ["risk_level_logits"] or not self.past_names:
            raise GuardError(
                f"{self.path} is not a Qwen3Guard-Stream graph with KV cache.",
                hint="Export one with `guard synth qwen3guard-stream` (export.export_folder).",
            )
        shape = inputs[self.past_names[0]].shape
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        # The FP16 variant keeps its cache in FP16 (half the memory, no cast of it per call).
        float16 = "float16" in inputs[self.past_names[0]].type
        self.dtype = np.dtype(np.float16 if float16 else np.float32)
        self.shared = uses_shared_buffer(self.path)
        self.bound: list[Any] = []  # shared: OrtValues on self.past's memory
        self.reset()

    def reset(self) -> None:
        if self.shared and self.bound:  # keep the buffers: the next call overwrites them
            self.length = 0
            return
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.dtype)
        self.past: list[Any] = [empty] * len(self.past_names)  # shared: numpy buffers
        self.bound = []
        self.length = 0

    def crop(self, length: int) -> None:
        """Forget every position from `length` on (a shared buffer keeps its memory; the next
        call overwrites them)."""
        if not self.shared and length < self.length:
            self.past = [
                np.ascontiguousarray(_array(p)[:, :, :length], dtype=self.dtype) for p in self.past
            ]
        self.length = min(self.length, length)

    def run_batch(
        self, ids: np.ndarray, mask: np.ndarray, pos: np.ndarray, past: list[np.ndarray]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        feed = {"input_ids": ids, "attention_mask": mask, "position_ids": pos}
        feed.update(zip(self.past_names, past, strict=True))
        try:
            outs = self.session.run(None, feed)
        except Exception as exc:
            raise GuardError(f"onnxruntime failed on {self.path.name}: {exc}") from exc
        return outs[:4], outs[4:]

    def _reserve(self, total: int) -> None:
        """Buffers of at least `total` positions, the cache so far copied over."""
        capacity = self.past[0].shape[2]
        if total <= capacity and self.bound:
            return
        size = max(2 * capacity, -(-total // BUFFER_STEP) * BUFFER_STEP)
        shape = (1, self.kv_heads, size, self.head_dim)
        grown = []
        for old in self.past:
            new = np.empty(shape, dtype=self.dtype)
            new[:, :, : self.length] = old[:, :, : self.length]
            grown.append(new)
        self.past = grown
        self.bound = [self.ort.OrtValue.ortvalue_from_numpy(b) for b in grown]

    def feed(self, ids: list[int]) -> Logits:
        """One stream's step: only the new tokens run; the cache stays in onnxruntime's hands
        between calls (I/O binding)."""
        q = len(ids)
        total = self.length + q
        binding = self.session.io_binding()
        binding.bind_cpu_input("input_ids", np.array([ids], dtype=np.int64))
        binding.bind_cpu_input("attention_mask", np.ones((1, total), dtype=np.int64))
        binding.bind_cpu_input("position_ids", np.arange(self.length, total, dtype=np.int64)[None])
        for name in self.output_names[:4]:
            binding.bind_output(name, "cpu")
        if self.shared:
            self._reserve(total)
            for past, present, value in zip(
                self.past_names, self.output_names[4:], self.bound, strict=True
            ):
                binding.bind_ortvalue_input(past, value)
                binding.bind_ortvalue_output(present, value)
        else:
            for name, value in zip(self.past_names, self.past, strict=True):
                if isinstance(value, np.ndarray):
                    binding.bind_cpu_input(name, value)
                else:
                    binding.bind_ortvalue_input(name, value)
            for name in self.output_names[4:]:
                binding.bind_output(name, "cpu")
        try:
            self.session.run_with_iobinding(binding)
        except Exception as exc:
            raise GuardError(f"onnxruntime failed on {self.path.name}: {exc}") from exc
        outs = binding.get_outputs()
        if not self.shared:
            self.past = list(outs[4:])
        self.length = total
        a, b, c, d = (o.numpy()[0].astype(np.float32) for o in outs[:4])
        return a, b, c, d


def _array(value: Any) -> np.ndarray:
    return value if isinstance(value, np.ndarray) else value.numpy()


def uses_shared_buffer(path: Path) -> bool:
    """Whether the graph's attention is GroupQueryAttention (graph.py), which can update a
    preallocated cache in place: a scan of the graph file's bytes (weights kept outside it)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.find(b"GroupQueryAttention") >= 0
    except (OSError, ValueError):
        return False
