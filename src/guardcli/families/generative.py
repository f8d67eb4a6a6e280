"""What the generative guards (qwen3guard-gen, llama-guard) share: two modes (score: one
forward pass read at the verdict token; generate: greedy decoding, then the strict parser) and
their backends (an exported KV-cache graph on onnxruntime, else the checkpoint with torch; a
GGUF file on llama.cpp with the 'llamacpp' extra). Whatever the backend, the family renders the
template and parses the answer: a backend only turns token ids into token ids or logits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import ClassVar

from guardcli.core.errors import ExitCode, GuardError, input_error
from guardcli.core.resolve import gguf_files
from guardcli.core.torch_dtype import SHORT, resolve_dtype
from guardcli.core.variants import (
    GGUF_VARIANT_FILES,
    GGUF_VARIANTS,
    LLAMACPP,
    TORCH_VARIANT,
    llamacpp_available,
    runtime_name,
)
from guardcli.families.base import Guard


class GenerativeGuard(Guard):
    accepts_messages = True
    runtimes: ClassVar[dict[str, str]] = {
        "onnxruntime": "onnxruntime",
        "torch": "torch",
        LLAMACPP: LLAMACPP,
    }
    modes: ClassVar[tuple[str, ...]] = ("generate", "score")

    def choose_modes(self, score: bool, generate: bool) -> None:
        if not (score or generate):
            raise input_error("Nothing to do: both generation and score mode are off.")
        self.use_score = score
        self.use_generation = generate

    def choose_backend(
        self, backend: str, allowed: Sequence[str], dtype: str | None, endpoint: str | None = None
    ) -> None:
        """`self.backend` (auto: the graph resolved, else torch; `remote` with an endpoint) and
        `self.dtype`, which only the torch backend takes (its variant then names it)."""
        backend = runtime_name(backend)
        if backend not in allowed:
            raise input_error(
                f"Unknown backend {backend!r}.", f"Choose one of: {', '.join(allowed)}."
            )
        if endpoint:
            backend = "remote"
        elif backend == "remote":
            raise input_error("The remote backend needs --endpoint URL.")
        elif backend == "auto" and self.model.variant in GGUF_VARIANTS:
            backend = LLAMACPP
        elif backend == "auto":
            backend = "torch" if self.model.variant == TORCH_VARIANT else "onnxruntime"
        if backend == LLAMACPP:
            self._on_llamacpp()
        elif self.model.variant in GGUF_VARIANTS and backend != "remote":
            raise input_error(
                f"The {self.model.variant} variant runs on llamacpp, not {backend}.",
                "Drop --backend, or pass --backend llamacpp.",
            )
        self.backend = backend
        self.dtype = resolve_dtype(dtype)
        if backend == "torch":
            # The checkpoint runs, whichever graph was resolved, in the dtype chosen.
            self.variant = f"{TORCH_VARIANT}-{SHORT[self.dtype]}"
        elif dtype not in (None, "auto"):
            raise input_error(
                f"--dtype applies to the torch backend, not to {backend}.",
                "Drop --dtype, or add --backend torch.",
            )

    def _on_llamacpp(self) -> None:
        """Checked at the door: llama_cpp importable and a GGUF file to run (`--variant auto`
        with --backend llamacpp: the folder's Q8_0, else its F16)."""
        if not llamacpp_available():
            raise GuardError(
                "--backend llamacpp needs llama-cpp-python, which is not installed.",
                hint="Install it with: pip install 'guardcli[llamacpp]' (it builds llama.cpp "
                "from source).",
                code=ExitCode.INPUT,
            )
        if self.model.variant in GGUF_VARIANTS:
            return
        present = gguf_files(self.model.path)
        if not present:
            raise GuardError(
                f"{self.model.path} has no GGUF file for --backend llamacpp.",
                hint=f"Make one with `guard quantize {self.model.path} --to gguf-q8_0`.",
                code=ExitCode.INPUT,
            )
        variant = present[0]
        graph = self.model.path / GGUF_VARIANT_FILES[variant]
        self.model = dataclasses.replace(self.model, variant=variant, graph=graph, backend=LLAMACPP)
        self.variant = variant

    def causal_lm(self, heads):
        """The local model: the ONNX graph (or the GGUF file on llama.cpp) with the template
        `heads` run once and their KV reused, or the checkpoint with torch."""
        if self.backend == LLAMACPP:
            from guardcli.runtime.causal_llamacpp import LlamaCppCausalLM

            return LlamaCppCausalLM(
                self.model.graph, self.model.path, threads=self.threads, prefixes=heads or ()
            )
        if self.backend == "onnxruntime":
            from guardcli.runtime.causal_lm import OnnxCausalLM

            return OnnxCausalLM(
                self.model.graph, self.model.path, threads=self.threads, prefixes=heads
            )
        from guardcli.runtime.causal_lm import TorchCausalLM

        return TorchCausalLM(self.model.path, threads=self.threads, dtype=self.dtype)

    def use_mode(self, mode: str) -> None:
        if mode not in self.modes:
            super().use_mode(mode)
        self.use_generation = mode == "generate"
        self.use_score = mode == "score"
