"""The synthetic CSAM-Guard: a random-weight Qwen3 encoder + last-token pooling + MLP head."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from guardcli.core.errors import GuardError
from guardcli.core.synthetic import SIZES, write_marker
from guardcli.families.seqcls.export import save_card_layout
from guardcli.runtime.onnx_recipes import to_fp16, to_int8_dynamic
from guardcli.runtime.qwen_tokenizer import write_tokenizer_files
from guardcli.runtime.synthetic import CSAM_GUARD_DIMS, _torch, export_seqcls_onnx, qwen3_config

CSAM_GUARD_MAX_LENGTH = 384


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


def synth(out: Path, *, name: str, size: str, seed: int, log, pytorch: bool = False, **_: object):
    """`guard synth csam-guard`: (folder, what its weights are)."""
    path = synth_csam_guard(out, size=size, seed=seed, pytorch=pytorch, log=log)
    return path, "random weights"
