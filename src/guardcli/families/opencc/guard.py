"""OpenCC escalation classifiers: a LoRA adapter + linear head on a causal-LM base, run with
torch (the base is rebuilt with transformers and peft exactly as the authors load it), or with
onnxruntime on the graph `guard export` makes (LoRA merged; bases that export, e.g. Qwen3).

Backend: torch by default, in the float type `dtype` chooses (auto: the authors' bfloat16 where
the CPU has native bf16, else float32; the verdict's variant says which: lora-bf16, lora-fp32);
onnxruntime with `--backend onnxruntime` or `--variant fp32`, and by default when the torch path
cannot run here but the graph is there (an ONNX-only folder from `guard export --out`, no base,
or no torch/peft installed).

Content moderation (`opencc-cm`) is an 11-category multilabel head with per-category calibrated
thresholds; the jailbreak detector (`opencc-jb`) is binary with one threshold.
"""

from __future__ import annotations

import dataclasses
import functools
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from guardcli.core.batching import pad
from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import ExitCode, GuardError, input_error, require_torch
from guardcli.core.resolve import ResolvedModel
from guardcli.core.thresholds import apply_thresholds
from guardcli.core.tokenize import Encoded, TextTokenizer
from guardcli.core.torch_dtype import SHORT, resolve_dtype
from guardcli.core.variants import LORA_VARIANT, runtime_name
from guardcli.families import register_family
from guardcli.families.base import Guard, Judgement
from guardcli.families.opencc.frame import (
    OpenCCFrame,
    find_base,
    read_frame,
    stale_export,
    tokenizer_dir,
)
from guardcli.runtime import open_session

BACKENDS = ("auto", "torch", "onnxruntime")


def _torch_stack():
    return require_torch("Running OpenCC models (torch, transformers, peft)", peft=True)


def load_head(path, torch):
    """The linear head's state dict (weights_only), with any module prefix stripped."""
    if not path.exists():
        raise GuardError(f"The OpenCC head {path} is missing.")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    weight = next((v for k, v in state.items() if k.split(".")[-1] == "weight"), None)
    bias = next((v for k, v in state.items() if k.split(".")[-1] == "bias"), None)
    if weight is None or weight.ndim != 2:
        raise GuardError(f"{path} holds no linear layer weight.")
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    head.load_state_dict({"weight": weight, **({"bias": bias} if bias is not None else {})})
    return head.float().eval()


def load_adapter_state(path, torch) -> dict[str, Any]:
    if not path.exists():
        raise GuardError(f"The OpenCC LoRA adapter {path} is missing.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


@functools.lru_cache(maxsize=4)
def _rebuild_cached(model_dir: str, base_dir: str, stamp: tuple[int, ...], dtype: str):
    return rebuild(read_frame(Path(model_dir)), Path(base_dir), dtype=dtype)


def rebuild_shared(frame: OpenCCFrame, base_dir: Path, *, dtype: str = "bfloat16"):
    """`rebuild`, reused within a process for the same unchanged files (a pipeline that names
    one model twice, a notebook that loads it again)."""
    files = (frame.adapter_file, frame.head_file, base_dir / "config.json")
    stamp = tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)
    return _rebuild_cached(str(frame.path), str(base_dir), stamp, dtype)


def rebuild(frame: OpenCCFrame, base_dir, *, dtype: str = "bfloat16"):
    """(peft model, head): base AutoModelForCausalLM + LoraConfig + set_peft_model_state_dict."""
    torch = _torch_stack()
    from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # stderr is for guard's own messages
    hf_logging.disable_progress_bar()
    try:
        base = AutoModelForCausalLM.from_pretrained(
            str(base_dir), dtype=getattr(torch, dtype), output_hidden_states=True
        )
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    config = LoraConfig(
        r=int(frame.lora["lora_r"]),
        lora_alpha=int(frame.lora["lora_alpha"]),
        lora_dropout=float(frame.lora["lora_dropout"]),
        target_modules=list(frame.lora["lora_target_modules"]),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(base, config)
    result = set_peft_model_state_dict(model, load_adapter_state(frame.adapter_file, torch))
    unexpected = list(getattr(result, "unexpected_keys", None) or [])
    if unexpected:
        raise GuardError(
            f"{frame.adapter_file} does not fit {frame.base_model} with target modules "
            f"{frame.lora['lora_target_modules']}: {len(unexpected)} unexpected key(s), "
            f"e.g. {unexpected[0]}."
        )
    return model.eval(), load_head(frame.head_file, torch)


def head_logits(model, head, input_ids, attention):
    """The head's logits [B, num_labels] (float32) of the peft model on a right-padded batch:
    hidden_states[-1] pooled at the last real token."""
    import torch

    # The causal LM's own decoder (LoRA layers are injected in place): the same
    # hidden_states as the full model, without the vocabulary projection.
    decoder = model.get_base_model().base_model
    out = decoder(input_ids=input_ids, attention_mask=attention, output_hidden_states=True)
    hidden = out.hidden_states[-1]
    last = input_ids.shape[1] - 1 - attention.flip(1).argmax(1)
    return head(hidden[torch.arange(hidden.shape[0]), last].float())


@register_family
class OpenCCGuard(Guard):
    """Raw text, right padding, last-real-token pooling of hidden_states[-1], sigmoid
    (multilabel or one logit) else softmax; per-category thresholds."""

    family = "opencc"
    has_categories = True
    runtimes: ClassVar[dict[str, str]] = {"torch": "torch", "onnxruntime": "onnxruntime"}

    def __init__(
        self,
        model: ResolvedModel,
        *,
        threshold: float | None = None,
        backend: str = "auto",
        dtype: str | None = None,
        **kwargs: Any,
    ):
        self.frame = read_frame(model.path)
        if kwargs.get("max_length") is None:
            kwargs["max_length"] = self.frame.max_length
        model, self.backend = self._pick_backend(model, backend)
        self.dtype = resolve_dtype(dtype)
        if self.backend == "onnxruntime" and dtype not in (None, "auto"):
            raise input_error(
                f"--dtype applies to the torch backend; {model.variant} runs on onnxruntime "
                "in its own precision.",
                "Drop --dtype, or add --backend torch.",
            )
        super().__init__(model, threshold=threshold, **kwargs)
        if self.backend == "torch":
            self.variant = f"{LORA_VARIANT}-{SHORT[self.dtype]}"
        if self.frame.jailbreak:
            if self.category_thresholds is not None:
                raise GuardError(
                    f"'{self.name}' is a jailbreak detector with one threshold.",
                    hint="Use --threshold.",
                    code=ExitCode.INPUT,
                )
            if threshold is None and self.frame.threshold is not None:
                self.threshold = self.frame.threshold
            self.thresholds: dict[str, float] = {}
            return
        categories = list(self.frame.categories)
        calibrated = {c: self.frame.thresholds.get(c, self.threshold) for c in categories}
        if threshold is not None:  # --threshold: one value for every category
            calibrated = dict.fromkeys(categories, threshold)
        self.thresholds = apply_thresholds(
            calibrated, self.category_thresholds or {}, categories, "--thresholds"
        )

    @staticmethod
    def _pick_backend(model: ResolvedModel, backend: str) -> tuple[ResolvedModel, str]:
        """(the model with the variant that backend runs, torch|onnxruntime). The resolved
        variant decides under auto: lora -> torch, an ONNX variant -> onnxruntime."""
        backend = runtime_name(backend)
        if backend not in BACKENDS:
            raise input_error(f"Unknown backend {backend!r}.", "Choose one of: onnxruntime, torch.")
        onnx = model.variant in ONNX_VARIANT_FILES
        if backend == "auto":
            return model, "onnxruntime" if onnx else "torch"
        if backend == "torch" and onnx:
            adapter = read_frame(model.path).adapter_file
            return dataclasses.replace(model, variant=LORA_VARIANT, graph=adapter), "torch"
        if backend == "onnxruntime" and not onnx:
            graph = model.path / ONNX_VARIANT_FILES["fp32"]
            if not graph.is_file():
                raise GuardError(
                    f"{model.path} has no ONNX graph ({ONNX_VARIANT_FILES['fp32']}).",
                    hint=f"Make it with `guard export {model.path} --out {model.path}` (bases "
                    "that export, e.g. Qwen3; not Qwen3.5), or use --backend torch.",
                )
            return dataclasses.replace(model, variant="fp32", graph=graph), "onnxruntime"
        return model, backend

    @property
    def verdict_threshold(self) -> float | None:
        return self.threshold if self.frame.jailbreak else None

    @cached_property
    def base_dir(self):
        return find_base(self.frame)

    @cached_property
    def tokenizer(self) -> TextTokenizer:
        # The ONNX graph needs no base: its tokenizer comes from the model folder when there.
        return TextTokenizer(tokenizer_dir(self.frame, lambda: self.base_dir), self.max_length)

    @cached_property
    def session(self):

        changed = stale_export(self.frame)
        if changed:
            raise GuardError(
                f"{self.model.graph} was exported from another {changed} than the one in "
                f"{self.frame.path}.",
                hint=f"Export it again with `guard export {self.frame.path} --out "
                f"{self.frame.path}`, or use --backend torch.",
            )
        return open_session(self.model, threads=self.threads, one_shot=self.one_shot)

    @cached_property
    def network(self):
        torch = _torch_stack()
        if self.threads:
            torch.set_num_threads(self.threads)
        return rebuild_shared(self.frame, self.base_dir, dtype=self.dtype)

    def runtime_calls(self) -> list[tuple[object, str]]:
        self.network  # noqa: B018 - loads the base, the adapter and the head
        return [(self, "probabilities")]

    def weight_files(self) -> list[Path]:
        base = sorted([*self.base_dir.glob("*.safetensors"), *self.base_dir.glob("*.bin")])
        return [self.frame.adapter_file, self.frame.head_file, *base]

    def probabilities(self, batch: list[Encoded]):
        """Per-label probabilities [B, num_labels] as float64 numpy."""
        import numpy as np

        ids, mask = pad([e.ids for e in batch], self.tokenizer.pad_id)
        sigmoid = self.frame.objective == "multilabel"
        if self.backend == "onnxruntime":
            logits = np.asarray(self.session.run(ids, mask), dtype=np.float64)
            if sigmoid or logits.shape[-1] == 1:
                return 1.0 / (1.0 + np.exp(-logits))
            shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
            return shifted / shifted.sum(axis=-1, keepdims=True)
        torch = _torch_stack()
        model, head = self.network
        with torch.no_grad():
            logits = head_logits(model, head, torch.from_numpy(ids), torch.from_numpy(mask))
            if sigmoid or logits.shape[-1] == 1:
                probs = torch.sigmoid(logits)
            else:
                probs = torch.softmax(logits, dim=-1)
        return np.asarray(probs.double().numpy(), dtype=np.float64)

    def score_batch(self, batch: list[Encoded]) -> list[Judgement]:
        probs = self.probabilities(batch)
        if self.frame.jailbreak:
            return [self._jailbreak(row) for row in probs]
        taxonomy = self.frame.taxonomy
        if probs.shape[1] != len(taxonomy):
            raise GuardError(
                f"The head of {self.name} has {probs.shape[1]} outputs but its taxonomy has "
                f"{len(taxonomy)} labels."
            )
        return [self._multilabel(dict(zip(taxonomy, row, strict=True))) for row in probs]

    def _jailbreak(self, row) -> Judgement:
        score = float(row[0] if len(row) == 1 else row[1])
        flagged = score >= self.threshold
        labels = self.frame.taxonomy if len(self.frame.taxonomy) == 2 else ("benign", "jailbreak")
        return Judgement(score=score, flagged=flagged, label=labels[1] if flagged else labels[0])

    def _multilabel(self, scores: dict[str, float]) -> Judgement:
        categories = {}
        for name in self.frame.categories:
            score, threshold = float(scores[name]), self.thresholds[name]
            categories[name] = {
                "score": round(score, 6),
                "threshold": threshold,
                "flagged": score >= threshold,
            }
        flagged = [n for n, c in categories.items() if c["flagged"]]
        top = max(self.frame.categories, key=lambda n: scores[n])
        label = max(flagged, key=lambda n: scores[n]) if flagged else "Benign"
        return Judgement(
            score=float(scores[top]), flagged=bool(flagged), label=label, categories=categories
        )
