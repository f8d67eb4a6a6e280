"""A causal LM on llama.cpp (llama-cpp-python, the 'llamacpp' extra): a GGUF file written by
runtime.gguf_export, with the interface of runtime.causal_lm's backends (generate, next_logits,
score_logits over token ids). The family renders and tokenizes the template and parses the
answer; this only turns token ids into token ids or logits.

One sequence at a time (llama-cpp-python's `Llama` holds one). A template head (`prefixes`) is
evaluated once, on its own, and kept in llama.cpp's KV cache: a prompt that starts with the head
held rewinds to its end (`Llama.eval` drops the cache past `n_tokens`) and evaluates only its
tail, so every prompt's tail is computed from the same head cache whatever came before it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from guardcli.core.cpu import usable_cpus
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.paths import cache_dir
from guardcli.core.variants import cpu_fingerprint
from guardcli.runtime.causal_lm import known_heads, shared_head, stop_ids

# The context llama.cpp is first given (its KV cache is allocated for all of it); a longer
# prompt + answer reloads the model with a context doubled to fit, up to the trained context.
START_CONTEXT = 4096
BATCH = 512


def load_llama_cpp():
    try:
        import llama_cpp
    except ImportError as exc:
        raise GuardError(
            "--backend llamacpp needs llama-cpp-python, which is not installed.",
            hint="Install it with: pip install 'guardcli[llamacpp]' (it builds llama.cpp from "
            "source).",
            code=ExitCode.INPUT,
        ) from exc
    return llama_cpp


# A child process evaluates a few tokens with llama.cpp's extra buffer types (AMX kernels,
# repacked weights) on: a VM can advertise AMX and still trap on its tile instructions (SIGILL
# kills the process that runs them), seen here with Q8_0 on a Xeon VM.
_PROBE = (
    "import sys; from llama_cpp import Llama; "
    "m = Llama(sys.argv[1], n_ctx=64, n_threads=1, verbose=False); m.eval([0, 1, 2, 3])"
)


def extra_bufts_work(gguf: Path) -> bool:
    """Whether llama.cpp's extra buffer types run `gguf` on this CPU: probed once in a child
    process per CPU and file, the answer kept in guardcli's cache (llamacpp-bufts.json)."""
    stat = Path(gguf).stat()
    key = f"{cpu_fingerprint()}|{Path(gguf).resolve()}|{stat.st_size}|{int(stat.st_mtime)}"
    store = cache_dir() / "llamacpp-bufts.json"
    try:
        known = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if key in known:
        return bool(known[key])
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, str(gguf)], capture_output=True, timeout=600
        )
        works = proc.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    known[key] = works
    try:
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f"{store.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        os.replace(tmp, store)
    except OSError:
        pass
    return works


class LlamaCppCausalLM:
    """llama.cpp on `gguf`; EOS and padding ids from `model_dir`'s generation_config.json, as
    the other backends read them; greedy decoding (argmax of the logits) in numpy."""

    def __init__(
        self,
        gguf: Path,
        model_dir: Path,
        *,
        threads: int | None = None,
        prefixes: Sequence[Sequence[int]] = (),
        context: int = START_CONTEXT,
    ):
        self.llama_cpp = load_llama_cpp()
        self.path = Path(gguf)
        self.threads = threads or usable_cpus()
        self.pad_id, self.eos_ids = stop_ids(model_dir)
        self.prefixes = known_heads(prefixes)
        self.held: tuple[int, ...] = ()  # the head whose KV is in the cache (at its start)
        self.extra_bufts = extra_bufts_work(self.path)
        self.llm = self._load(context)

    def _load(self, context: int):
        low = self.llama_cpp.llama_cpp
        defaults = low.llama_model_default_params

        def params():
            p = defaults()
            p.use_extra_bufts = self.extra_bufts
            return p

        low.llama_model_default_params = params  # Llama() exposes no use_extra_bufts
        try:
            llm = self.llama_cpp.Llama(
                str(self.path),
                n_ctx=context,
                n_batch=BATCH,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                verbose=False,
            )
        except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError
            raise GuardError(f"llama.cpp could not load {self.path}: {exc}") from exc
        finally:
            low.llama_model_default_params = defaults
        self.context = llm.n_ctx()
        self.trained = int(llm._model.n_ctx_train())
        self.n_vocab = llm.n_vocab()
        self.held = ()
        return llm

    def shared_prefix(self, prompts: list[list[int]]) -> tuple[int, ...] | None:
        return shared_head(self.prefixes, prompts)

    def _fit(self, tokens: int) -> None:
        """A context that holds `tokens` positions (reloading with a larger one if needed)."""
        if tokens <= self.context:
            return
        if tokens > self.trained:
            raise GuardError(
                f"{tokens} tokens exceed the model's context ({self.trained}).",
                hint="Lower --max-length or the answer's length.",
            )
        size = self.context
        while size < tokens:
            size *= 2
        self.llm.close()
        self.llm = self._load(min(size, self.trained))

    def _logits(self) -> np.ndarray:
        ptr = self.llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32)

    def _eval(self, tokens: list[int]) -> None:
        try:
            self.llm.eval(tokens)
        except Exception as exc:
            raise GuardError(f"llama.cpp failed on {self.path.name}: {exc}") from exc

    def _prefill(self, prompt: list[int], extra: int = 0) -> np.ndarray:
        """Logits after `prompt`, its KV in the cache (room for `extra` more positions); a known
        head's KV is kept from the last prompt that had it."""
        if not prompt:
            raise GuardError("llama.cpp was given an empty prompt.")
        self._fit(len(prompt) + extra)
        head = self.shared_prefix([prompt]) or ()
        if head and head != self.held:
            self.llm.n_tokens = 0
            self.held = ()
            self._eval(list(head))
        # A prompt without a known head overwrites the cache from its start.
        self.held = head
        self.llm.n_tokens = len(head)
        self._eval(prompt[len(head) :])
        return self._logits()

    def next_logits(self, prompts: list[list[int]]) -> np.ndarray:
        """Logits of the token after each prompt: [batch, vocab] float32."""
        return np.stack([self._prefill(list(p)) for p in prompts])

    def score_logits(
        self, prompts: list[list[int]], ids: Sequence[int], *, own_head: bool = True
    ) -> np.ndarray:
        """`next_logits(prompts)[:, ids]` (the interface of OnnxCausalLM's; llama.cpp computes
        the full vocabulary, `own_head` changes nothing)."""
        columns = list(ids)
        return np.stack([self._prefill(list(p))[columns] for p in prompts])

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """Greedy tokens after each prompt, up to and including the first EOS id, at most
        `max_new_tokens`."""
        out = []
        for prompt in prompts:
            logits = self._prefill(list(prompt), extra=max_new_tokens)
            tokens: list[int] = []
            for n in range(max_new_tokens):
                token = int(np.argmax(logits))
                tokens.append(token)
                if token in self.eos_ids or n == max_new_tokens - 1:
                    break
                self._eval([token])
                logits = self._logits()
            out.append(tokens)
        return out
