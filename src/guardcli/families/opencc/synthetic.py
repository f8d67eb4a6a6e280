"""Random-weight OpenCC escalation models in the real repository layout, on a tiny base.

The real base is Qwen3.5-0.8B (hybrid Gated-DeltaNet / full-attention layers). transformers 5
has that architecture (`Qwen3_5ForCausalLM`, text part), so the tiny base is a real Qwen3.5 with
tiny dimensions; it uses the Qwen3 tokenizer (151,669 ids), because Qwen3.5's own tokenizer
cannot be built offline. `base="qwen3"` puts the same adapter and head on a Qwen3 base instead
(Qwen3-0.6B's dimensions at full size): an architecture that exports to ONNX, for testing
`guard export` on OpenCC folders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError
from guardcli.core.synthetic import SIZES, write_marker
from guardcli.families.opencc.frame import (
    HARM_CATEGORIES,
    JAILBREAK_THRESHOLD,
    LOCAL_BASE,
    TAXONOMY,
)
from guardcli.runtime.qwen_tokenizer import write_tokenizer_files
from guardcli.runtime.synthetic import QWEN3_VOCAB, EncoderDims, _torch, qwen3_config

REAL_BASE = "Qwen/Qwen3.5-0.8B"
# The base architectures a synthetic OpenCC model can sit on, and the hub name each records.
BASES = {"qwen3.5": REAL_BASE, "qwen3": "Qwen/Qwen3-0.6B"}
OPENCC_KINDS = ("opencc-cm", "opencc-jb")
# Qwen3.5-0.8B: hidden 1024, 24 layers (3 linear-attention : 1 full-attention), 8 heads,
# 2 KV heads, head_dim 256, intermediate 3584; linear attention 16 key / 16 value heads of 128.
QWEN35_DIMS: dict[str, dict[str, Any]] = {
    "full": dict(
        hidden_size=1024,
        intermediate_size=3584,
        num_hidden_layers=24,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=256,
        linear_key_head_dim=128,
        linear_value_head_dim=128,
        linear_num_key_heads=16,
        linear_num_value_heads=16,
    ),
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
        linear_num_key_heads=2,
        linear_num_value_heads=4,
    ),
}


def build_qwen35_base(size: str = "tiny", seed: int = 0):
    """A random-weight Qwen3.5 causal LM (text part), deterministic."""
    torch = _torch()
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    config = Qwen3_5TextConfig(
        vocab_size=QWEN3_VOCAB,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        **QWEN35_DIMS[size],
    )
    torch.manual_seed(seed)
    return Qwen3_5ForCausalLM(config).eval()


# Qwen3-0.6B: hidden 1024, 28 layers, 16 heads, 8 KV heads, head_dim 128, intermediate 3072.
QWEN3_DIMS = {
    "full": EncoderDims(1024, 28, 16, 8, 128, 3072, 0),
    "tiny": EncoderDims(64, 2, 4, 2, 16, 128, 0),
}


def build_qwen3_base(size: str = "tiny", seed: int = 0):
    """A random-weight Qwen3 causal LM, deterministic."""
    torch = _torch()
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    return Qwen3ForCausalLM(qwen3_config(QWEN3_DIMS[size])).eval()


def synth_opencc(
    out: Path,
    kind: str = "opencc-cm",
    *,
    size: str = "tiny",
    seed: int = 0,
    base: str = "qwen3.5",
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write an OpenCC checkpoint (weight_frame.json, LoRA adapter, head, thresholds sidecar,
    train_config.json, tokenizer) with its base model (`base`: qwen3.5 or qwen3) in `base/`."""
    if kind not in OPENCC_KINDS:
        raise GuardError(f"Unknown OpenCC model {kind!r}; choose one of {', '.join(OPENCC_KINDS)}.")
    if size not in SIZES:
        raise GuardError(f"Unknown size {size!r}; choose one of {', '.join(SIZES)}.")
    if base not in BASES:
        raise GuardError(f"Unknown base {base!r}; choose one of {', '.join(BASES)}.")
    torch = _torch()
    from peft import LoraConfig, get_peft_model
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    jailbreak = kind == "opencc-jb"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_name, arch = BASES[base], "Qwen3.5" if base == "qwen3.5" else "Qwen3"
    log(f"building a {size} {arch} base")
    model = build_qwen35_base(size, seed) if base == "qwen3.5" else build_qwen3_base(size, seed)
    model.to(torch.bfloat16).save_pretrained(str(out / LOCAL_BASE))
    write_tokenizer_files(out / LOCAL_BASE, append_eos=False, max_length=32768)
    write_tokenizer_files(out, append_eos=False, max_length=32768)
    taxonomy = ["benign", "jailbreak"] if jailbreak else list(TAXONOMY)
    train = {
        "model_name": base_name,
        "objective": "softmax" if jailbreak else "multilabel",
        "num_labels": len(taxonomy),
        "lora_r": 16,
        "lora_alpha": 32,
        "lora_dropout": 0.05,
        "lora_target_modules": ["q_proj", "v_proj"],
    }
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        target_modules=["q_proj", "v_proj"],
        bias="none",
        task_type="CAUSAL_LM",
        init_lora_weights=False,  # random A and B, so the adapter changes the output
    )
    torch.manual_seed(seed + 1)
    peft_model = get_peft_model(model.float(), lora)
    peft_model.save_pretrained(str(out))
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    adapter_config["base_model_name_or_path"] = base_name
    (out / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2) + "\n")
    head = torch.nn.Linear(model.config.hidden_size, len(taxonomy))
    with torch.no_grad():  # widen the random head so that scores spread over (0, 1)
        head.weight.mul_(4.0)
    head_name = "jailbreak_head.pt" if jailbreak else "classification_head.pt"
    torch.save(head.state_dict(), str(out / head_name))
    frame_key = "jailbreak_classifier" if jailbreak else "classifier"
    frame: dict[str, Any] = {
        "base_model": base_name,
        "objective": train["objective"],
        "taxonomy": taxonomy,
        "head_filename": head_name,
    }
    if jailbreak:
        frame["threshold"] = None
        (out / "threshold.json").write_text(json.dumps({"threshold": JAILBREAK_THRESHOLD}) + "\n")
    else:
        frame["thresholds"] = None
        generator = torch.Generator().manual_seed(seed + 2)
        values = (0.3 + 0.4 * torch.rand(len(HARM_CATEGORIES), generator=generator)).tolist()
        calibrated = {c: round(v, 4) for c, v in zip(HARM_CATEGORIES, values, strict=True)}
        (out / "thresholds.json").write_text(
            json.dumps({"thresholds": calibrated}, indent=2) + "\n"
        )
    (out / "weight_frame.json").write_text(json.dumps({frame_key: frame}, indent=2) + "\n")
    (out / "train_config.json").write_text(json.dumps(train, indent=2) + "\n")
    where = f"tiny {arch} in {LOCAL_BASE}/" if size == "tiny" else f"{arch} in {LOCAL_BASE}/"
    write_marker(out, kind, size=size, seed=seed, base=where)
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def synth(out: Path, *, name: str, size: str, seed: int, log, base: str = "qwen3.5", **_: object):
    """`guard synth opencc-cm|opencc-jb`: (folder, what its weights are)."""
    return synth_opencc(out, name, size=size, seed=seed, base=base, log=log), "random weights"
