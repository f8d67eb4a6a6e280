"""Random-weight dialogue-intent classifiers (`intent-ctx`): Qwen3ForSequenceClassification in
the Hugging Face layout, its task description, and ONNX fp32/fp16/int8 exported from it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from guardcli.core.errors import GuardError, missing_extra
from guardcli.core.synthetic import SIZES, write_marker
from guardcli.families.dialogue import DIALOGUE_MARKER, FAMILY, KV_GRAPHS
from guardcli.runtime import causal_onnx
from guardcli.runtime.onnx_recipes import to_fp16, to_int8_dynamic
from guardcli.runtime.qwen_tokenizer import write_tokenizer_files
from guardcli.runtime.synthetic import (
    CSAM_GUARD_DIMS,
    EncoderDims,
    _torch,
    export_seqcls_onnx,
    qwen3_config,
)

DIALOGUE_MAX_LENGTH = FAMILY.max_length
# intent_safety_clf_4b is a Qwen3-4B: hidden 2560, 36 layers, 32 heads, 8 KV heads.
INTENT_DIMS = {"full": EncoderDims(2560, 36, 32, 8, 128, 9728, 0), "tiny": CSAM_GUARD_DIMS["tiny"]}
# A neutral placeholder: the real file is the prompt the classifier was trained with.
PLACEHOLDER_TASK = (
    "判断用户在对话中的最新意图是否安全。\n"
    "Placeholder task description of a synthetic model: label 1 = unsafe, label 0 = safe."
)


def build_intent_module(size: str = "tiny", seed: int = 0):
    """A random-weight Qwen3ForSequenceClassification (2 labels, pad = <|endoftext|>)."""
    torch = _torch()
    from transformers import Qwen3ForSequenceClassification

    config = qwen3_config(INTENT_DIMS[size], num_labels=2)
    config.id2label = {0: "safe", 1: "unsafe"}
    config.label2id = {"safe": 0, "unsafe": 1}
    config.tie_word_embeddings = size == "tiny"
    torch.manual_seed(seed)
    model = Qwen3ForSequenceClassification(config).eval()
    with torch.no_grad():  # widen the random head so that verdicts spread over (0, 1)
        model.score.weight.mul_(16.0 / max(1e-6, float(model.model.norm.weight.abs().mean())))
    return model


class _SeqClsExport:
    """Factory for the export wrapper (a torch.nn.Module built lazily, torch being optional)."""

    @staticmethod
    def wrap(model):
        torch = _torch()

        class SeqClsForExport(torch.nn.Module):  # type: ignore[name-defined]
            """transformers' sequence classification with a 4-D additive mask (TorchScript
            export friendly): positions from the mask, pooling at the rightmost non-pad token."""

            def __init__(self) -> None:
                super().__init__()
                self.inner = model
                self.pad_id = int(model.config.pad_token_id)

            def forward(self, input_ids, attention_mask):
                length = input_ids.shape[1]
                keys = attention_mask.bool()[:, None, None, :]
                causal = torch.ones(length, length, dtype=torch.bool).tril()
                allowed = causal[None, None, :, :] & keys
                additive = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
                    ~allowed, torch.finfo(torch.float32).min
                )
                # Positions count real tokens only: a left-padded row gets the rotary angles it
                # has alone, so its score does not depend on the longest row in its batch.
                position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
                hidden = self.inner.model(
                    input_ids=input_ids,
                    attention_mask=additive,
                    position_ids=position_ids,
                    use_cache=False,
                ).last_hidden_state
                logits = self.inner.score(hidden)
                non_pad = (input_ids != self.pad_id).to(torch.int64)
                positions = torch.arange(length, dtype=torch.int64)
                last = (positions * non_pad).argmax(-1)
                return logits[torch.arange(logits.shape[0]), last]

        return SeqClsForExport().eval()


def export_dialogue_onnx(
    model_dir: Path,
    *,
    variants: tuple[str, ...] = ("fp32", "fp16", "int8"),
    kv: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> list[Path]:
    """Export a Qwen3ForSequenceClassification folder to onnx/model.onnx (FP32), then the card's
    FP16 and dynamic-INT8 recipes, as for CSAM-Guard."""
    torch = _torch()
    from transformers import AutoModelForSequenceClassification

    model_dir = Path(model_dir)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir), dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise GuardError(f"Cannot load {model_dir} with transformers: {exc}") from None
    model.config._attn_implementation = "eager"
    if model.config.pad_token_id is None:
        raise GuardError(f"{model_dir}/config.json has no pad_token_id.")
    onnx_dir = model_dir / "onnx"
    log("exporting FP32 ONNX")
    export_seqcls_onnx(
        _SeqClsExport.wrap(model.eval()), onnx_dir / "model.onnx", max_length=DIALOGUE_MAX_LENGTH
    )
    written = [onnx_dir / "model.onnx"]
    if "fp16" in variants:
        log("converting FP16 (norms and I/O kept FP32)")
        to_fp16(onnx_dir / "model.onnx", onnx_dir / "model_fp16.onnx")
        written.append(onnx_dir / "model_fp16.onnx")
    if "int8" in variants:
        log("quantizing INT8, activations per row (down_proj kept FP32)")
        to_int8_dynamic(onnx_dir / "model.onnx", onnx_dir / "model_quantized.onnx")
        written.append(onnx_dir / "model_quantized.onnx")
    if kv:
        # The same classifier with past-KV inputs: the task-description prefix every input
        # starts with is computed once and rows continue from its KV (families.dialogue.prefix).
        log("exporting FP32 ONNX with KV cache (prefix reuse)")
        kv_fp32 = onnx_dir / KV_GRAPHS["fp32"]
        causal_onnx.export_causal_lm(model.eval(), kv_fp32, classifier=True)
        written.append(kv_fp32)
        if "int8" in variants:
            to_int8_dynamic(kv_fp32, onnx_dir / KV_GRAPHS["int8"])
            written.append(onnx_dir / KV_GRAPHS["int8"])
    return written


def synth_intent_ctx(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    variants: tuple[str, ...] = ("fp32", "fp16", "int8"),
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write a random-weight dialogue-intent classifier: safetensors + config (the Hugging Face
    layout), tokenizer, task_description.txt, and ONNX variants exported from it."""
    if size not in SIZES:
        raise GuardError(f"Unknown size {size!r}; choose one of {', '.join(SIZES)}.")
    torch = _torch()
    try:
        from transformers.utils import logging as hf_logging
    except ImportError as exc:  # pragma: no cover
        raise missing_extra("export", "Building synthetic models") from exc

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    model = build_intent_module(size, seed)
    model.to(torch.bfloat16 if size == "full" else torch.float32).save_pretrained(str(out))
    write_tokenizer_files(out, append_eos=False, max_length=DIALOGUE_MAX_LENGTH)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.update(padding_side="left", truncation_side="left")
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / DIALOGUE_MARKER).write_text(PLACEHOLDER_TASK + "\n", encoding="utf-8")
    export_dialogue_onnx(out, variants=("fp32", *[v for v in variants if v != "fp32"]), log=log)
    write_marker(out, "intent-ctx", size=size, seed=seed)
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def synth(out: Path, *, name: str, size: str, seed: int, log, **_: object):
    """`guard synth intent-ctx`: (folder, what its weights are)."""
    return synth_intent_ctx(out, size=size, seed=seed, log=log), "random weights"
