"""Random-weight models of each family's real architecture, tiny (tests) or full size (benchmarks).

They are built locally with transformers and exported the way the real artifacts were, so every
command can be exercised end to end without the hub. Their verdicts mean nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ExitCode, GuardError, require_torch

SIZES = ("tiny", "full")
SYNTHETIC_MARKER = "guardcli_synthetic.json"


@dataclass(frozen=True)
class EncoderDims:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    head_hidden: int


# Qwen3-Embedding-0.6B dimensions + the card's MLP head 1024 -> 256 -> 2.
CSAM_GUARD_DIMS = {
    "full": EncoderDims(1024, 28, 16, 8, 128, 3072, 256),
    "tiny": EncoderDims(64, 2, 4, 2, 16, 128, 32),
}
QWEN3_VOCAB = 151_669
CSAM_GUARD_MAX_LENGTH = 384


def _torch():
    return require_torch("Building synthetic models")


def qwen3_config(dims: EncoderDims, **extra: Any):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=QWEN3_VOCAB,
        hidden_size=dims.hidden,
        num_hidden_layers=dims.layers,
        num_attention_heads=dims.heads,
        num_key_value_heads=dims.kv_heads,
        head_dim=dims.head_dim,
        intermediate_size=dims.intermediate,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151643,
        pad_token_id=151643,
        **extra,
    )


def build_csam_guard_module(size: str = "tiny", seed: int = 0):
    """The PyTorch classifier: Qwen3 encoder, last-token pooling, MLP head. Deterministic."""
    torch = _torch()
    from transformers import Qwen3Model

    dims = CSAM_GUARD_DIMS[size]
    torch.manual_seed(seed)
    config = qwen3_config(dims)
    config._attn_implementation = "eager"

    class LastTokenClassifier(torch.nn.Module):  # type: ignore[name-defined]
        """Qwen3 encoder + pooling on the last non-pad token + MLP head, as one graph."""

        def __init__(self) -> None:
            super().__init__()
            self.model = Qwen3Model(config)
            self.head = torch.nn.Sequential(
                torch.nn.Linear(dims.hidden, dims.head_hidden),
                torch.nn.GELU(),
                torch.nn.Linear(dims.head_hidden, 2),
            )

        def forward(self, input_ids, attention_mask):
            length = input_ids.shape[1]
            keys = attention_mask.bool()[:, None, None, :]
            causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).tril()
            allowed = causal[None, None, :, :] & keys
            # A 4-D additive mask built here keeps the TorchScript export free of the
            # DynamicCache/vmap machinery transformers uses for 2-D masks.
            additive = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(
                ~allowed, torch.finfo(torch.float32).min
            )
            hidden = self.model(
                input_ids=input_ids, attention_mask=additive, use_cache=False
            ).last_hidden_state
            # Last real token, for right or left padding alike.
            last = length - 1 - attention_mask.flip(1).argmax(1)
            pooled = hidden[torch.arange(hidden.shape[0]), last]
            return self.head(pooled)

    module = LastTokenClassifier().eval()
    with torch.no_grad():
        # Widen the random head so that verdicts spread over (0, 1) instead of sitting at 0.5.
        scale = 16.0 / max(1e-6, float(module.model.norm.weight.abs().mean()))
        module.head[2].weight.mul_(scale)
    return module


def export_seqcls_onnx(module, path: Path, *, max_length: int, example=None) -> None:
    """TorchScript ONNX export of input_ids, attention_mask [batch, sequence] -> logits, with
    dynamic batch and sequence axes and one external-data file. `example`: (ids, mask) to
    trace with (default: two short Qwen-vocabulary rows, one padded)."""
    torch = _torch()
    from .convert.onnx_recipes import export_torchscript

    if example is None:
        ids = torch.tensor([[9707, 1879, 151643], [9707, 151643, 151643]], dtype=torch.int64)
        mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.int64)
        example = (ids, mask)
    export_torchscript(
        module,
        example,
        path,
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch"},
        },
        opset_version=17,
    )


def synth_csam_guard(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    variants: tuple[str, ...] = ("fp32", "fp16", "int8"),
    pytorch: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write a random-weight CSAM-Guard repository: tokenizer, config, ONNX fp32/fp16/int8,
    and with `pytorch` the card's PyTorch layout (encoder/ + head.pt + model_config.json, FP32)."""
    if size not in SIZES:
        raise GuardError(f"Unknown size {size!r}; choose one of {', '.join(SIZES)}.")
    from .convert.onnx_recipes import to_fp16, to_int8_dynamic
    from .convert.qwen_tokenizer import write_tokenizer_files

    _torch()  # fail before writing anything when the export extra is missing
    out = Path(out)
    onnx_dir = out / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_tokenizer_files(out, append_eos=True, max_length=CSAM_GUARD_MAX_LENGTH)
    module = build_csam_guard_module(size, seed)
    config = module.model.config.to_dict()
    config.update(
        architectures=["Qwen3Model"],
        id2label={"0": "safe", "1": "unsafe"},
        label2id={"safe": 0, "unsafe": 1},
    )
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    if pytorch:
        from .convert.export import save_card_layout

        log("writing the PyTorch layout (encoder/, head.pt, model_config.json)")
        save_card_layout(module.model, module.head, out, max_length=CSAM_GUARD_MAX_LENGTH)
    log(f"exporting FP32 ONNX ({size})")
    export_seqcls_onnx(module, onnx_dir / "model.onnx", max_length=CSAM_GUARD_MAX_LENGTH)
    if "fp16" in variants:
        log("converting FP16 (norms and I/O kept FP32)")
        to_fp16(onnx_dir / "model.onnx", onnx_dir / "model_fp16.onnx")
    if "int8" in variants:
        log("quantizing INT8, activations per row (down_proj kept FP32)")
        to_int8_dynamic(onnx_dir / "model.onnx", onnx_dir / "model_quantized.onnx")
    write_marker(out, "csam-guard", size=size, seed=seed)
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


RANDOM_WEIGHTS_NOTE = "random weights: verdicts are meaningless; for tests and benchmarks only"


def write_marker(
    out: Path, family: str, *, size: str, seed: int, note: str = RANDOM_WEIGHTS_NOTE, **extra: Any
) -> None:
    """The file that tells every command (and a person) that a folder is synthetic."""
    marker = {"family": family, "size": size, "seed": seed, **extra, "note": note}
    (Path(out) / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def check_out(out: Path, *, force: bool = False) -> None:
    """Refuse to write a model into a non-empty folder (an existing model, or anything else)
    unless `force`: a synthetic model must never silently replace a real one."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise GuardError(f"--out {out} is a file, not a folder.", code=ExitCode.INPUT)
    if not force and out.is_dir() and any(out.iterdir()):
        what = "a synthetic model" if is_synthetic(out) else "files"
        raise GuardError(
            f"--out {out} already holds {what}; nothing was written.",
            hint="Pass --force to write over it, or choose an empty or new folder.",
            code=ExitCode.INPUT,
        )


def is_synthetic(model_dir: Path) -> bool:
    return (Path(model_dir) / SYNTHETIC_MARKER).exists()
