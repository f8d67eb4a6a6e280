"""A causal LM checkpoint (safetensors + tokenizer.json) written as one GGUF file for llama.cpp,
with the `gguf` package from PyPI (the 'llamacpp' extra) and nothing else: no torch, no
transformers, no llama.cpp source.

Two architectures, the ones the generative guards use: Qwen3 (qwen3guard-gen) and Llama
(llama-guard). Tensor names come from gguf's own name map; metadata and vocabulary follow what
llama.cpp's convert_hf_to_gguf.py writes for the same folder (tokenizer "gpt2": byte-level BPE
tokens, token types, merges, the pre-tokenizer's name, special ids from the tokenizer files).
Llama's q/k rows are permuted to llama.cpp's rotary layout and a Llama 3 rope scaling becomes
the rope_freqs tensor, as the converter does. F16: every matrix in float16, vectors float32.
Q8_0: every matrix whose rows split into 32-value blocks in Q8_0 (else float16)."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from guardcli.core.errors import ExitCode, GuardError, missing_extra

# GGUF variants: what `guard quantize --to` takes, and the file each writes (model folder-relative).
GGUF_TYPES = {"gguf-f16": "f16", "gguf-q8_0": "q8_0"}
GGUF_FILE = "model.gguf"
# model_type -> (gguf architecture, llama.cpp's pre-tokenizer for that family's tokenizer).
ARCHITECTURES = {"qwen3": ("qwen3", "qwen2"), "llama": ("llama", "llama-bpe")}
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def gguf_path(model_dir: Path, variant: str) -> Path:
    """Where the GGUF of `variant` (gguf-f16|gguf-q8_0) lives in a model folder."""
    return Path(model_dir) / variant / GGUF_FILE


def _gguf():
    try:
        import gguf
    except ImportError as exc:
        raise missing_extra("llamacpp", "Writing a GGUF file") from exc
    return gguf


def read_safetensors(model_dir: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) for every tensor of the folder's *.safetensors (bf16 widened)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise GuardError(
            f"{model_dir} has no *.safetensors checkpoint to write a GGUF file from.",
            code=ExitCode.INPUT,
        )
    for file in files:
        with open(file, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        data = np.memmap(file, dtype=np.uint8, mode="r", offset=8 + size)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype is None:
                raise GuardError(f"{file.name}: {name} is {info['dtype']}, not a float type.")
            start, end = info["data_offsets"]
            raw = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
            if dtype is np.uint16:  # bfloat16: the high half of a float32
                raw = (raw.astype(np.uint32) << 16).view(np.float32)
            yield name, raw.astype(np.float32)


def permute_rotary(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF Llama's q/k rows (rotate-half pairs) in llama.cpp's interleaved rotary order (the
    converter's LlamaModel.permute)."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def llama3_rope_factors(config: dict[str, Any], head_dim: int) -> np.ndarray | None:
    """The rope_freqs tensor of a Llama 3 rope scaling (the converter's formula), else None."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if str(rope.get("rope_type", rope.get("type", ""))).lower() != "llama3":
        return None
    base = rope.get("rope_theta", config.get("rope_theta", 10000.0))
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    factor = rope.get("factor", 8.0)
    low, high = rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def vocabulary(model_dir: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """tokenizer.json's tokens by id (ids past it: "[PADn]", unused) and their llama.cpp types:
    added special tokens (or ones that look like <|...|>) control, other added ones
    user-defined, the rest normal."""
    gguf = _gguf()
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise GuardError(f"{model_dir} has no tokenizer.json.", code=ExitCode.INPUT)
    spec = json.loads(path.read_text(encoding="utf-8"))
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise GuardError(f"{path}: a {model.get('type')} tokenizer; GGUF export reads BPE.")
    by_id: dict[int, str] = {int(i): t for t, i in model["vocab"].items()}
    added = {int(a["id"]): a for a in spec.get("added_tokens", [])}
    for i, a in added.items():
        by_id[i] = a["content"]
    tokens, types = [], []
    for i in range(max(vocab_size, len(by_id))):
        token = by_id.get(i)
        if token is None:
            tokens.append(f"[PAD{i}]")
            types.append(int(gguf.TokenType.UNUSED))
        elif i in added:
            looks = token.startswith("<|") and token.endswith("|>")
            special = added[i].get("special") or looks
            tokens.append(token)
            types.append(int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED))
        else:
            tokens.append(token)
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def _byte_level_post(model_dir: Path) -> bool:
    spec = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))
    return (spec.get("post_processor") or {}).get("type") == "ByteLevel"


def _tensor_type(name: str, array: np.ndarray, target: str):
    """The GGUF type a tensor is stored in: vectors (norms, rope factors) float32; matrices
    float16, or Q8_0 where their rows split into Q8_0 blocks."""
    gguf = _gguf()
    if array.ndim == 1 or target == "f32":
        return gguf.GGMLQuantizationType.F32
    if target == "q8_0":
        block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
        if array.shape[-1] % block == 0:
            return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def write_gguf(
    model_dir: Path, out: Path, target: str, *, log: Callable[[str], None] = lambda _: None
) -> Path:
    """Write `model_dir`'s checkpoint to `out` as GGUF, matrices in `target` (f16|q8_0; f32,
    no variant of its own, for comparisons)."""
    gguf = _gguf()
    from gguf import quants

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    kind = config.get("model_type")
    if kind not in ARCHITECTURES:
        raise GuardError(
            f"{model_dir}: model_type {kind!r} has no GGUF export here.",
            hint=f"GGUF export covers: {', '.join(ARCHITECTURES)}.",
            code=ExitCode.INPUT,
        )
    arch, pre = ARCHITECTURES[kind]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    layers = config["num_hidden_layers"]
    rope = config.get("rope_parameters") or {}
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model_dir.name)
    writer.add_block_count(layers)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if config.get("head_dim") is not None:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    if arch == "llama":
        writer.add_vocab_size(config["vocab_size"])
        writer.add_rope_dimension_count(head_dim)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }
    writer.add_file_type(file_type[target])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    tokens, types = vocabulary(model_dir, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if _byte_level_post(model_dir):  # no BOS/EOS added around a text (the converter's reading)
        special.add_special_token.setdefault("bos", False)
        special.add_special_token.setdefault("eos", False)
    special.add_to_gguf(writer, quiet=True)

    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), layers)
    factors = llama3_rope_factors(config, head_dim) if arch == "llama" else None
    tensors: list[tuple[str, np.ndarray]] = []
    if factors is not None:
        tensors.append((gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", factors))
    for name, array in read_safetensors(model_dir):
        if arch == "llama" and name.endswith("q_proj.weight"):
            array = permute_rotary(array, heads)
        elif arch == "llama" and name.endswith("k_proj.weight"):
            array = permute_rotary(array, kv_heads)
        if name == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue  # llama.cpp reads the embedding as the output projection
        mapped = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if mapped is None:
            raise GuardError(f"{model_dir}: no GGUF name for tensor {name!r} ({arch}).")
        tensors.append((mapped, array))
    for name, array in tensors:
        qtype = _tensor_type(name, array, target)
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, array.astype(np.float32))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, array.astype(np.float16))
        else:
            data = quants.quantize(array, qtype)
            writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qtype)
    log(f"writing {out} ({target}, {len(tensors)} tensors, {len(tokens)} tokens)")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
