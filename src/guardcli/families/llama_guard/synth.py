"""Synthetic Llama Guard 3 models: LlamaForCausalLM, a stand-in tokenizer, the 3-1B template.

No Llama 3 vocabulary ships offline with guardcli's dependencies, so the tokenizer is a small
byte-level BPE trained on the fly (Llama 3's pre-tokenizer pattern, its special tokens
<|begin_of_text|>, <|start_header_id|>, <|end_header_id|>, <|eot_id|>, <|eom_id|> ...), on the
template's own text and neutral sentences; "safe", "unsafe" and "\\n\\n" are single tokens, as in
Llama 3's. Token ids and counts therefore differ from the real model's.

`tiny` is trained for a few seconds on CPU to answer in Llama Guard's format:

- the conversation contains the marker word -> "\\n\\nunsafe\\nS1" (it is trained on judged
  turns only, and learns the word anywhere)
- otherwise -> "\\n\\nsafe"

Its verdicts mean nothing beyond the marker word. `full` has Llama Guard 3 1B's dimensions
(Llama-3.2-1B: hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, vocabulary
128,256, tied embeddings, llama3 RoPE scaling) and random, untrained weights: for benchmarks.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError
from guardcli.core.synthetic import SIZES, write_marker
from guardcli.families.llama_guard.format import packaged_template, render
from guardcli.families.llama_guard.synth_tokenizer import (
    EOS_TOKENS,
    MARKER_WORD,
    PAD_TOKEN,
    TOKENIZER_NOTE,
    training_conversations,
    write_tokenizer,
)
from guardcli.runtime.synthetic import answer_loss

FULL_VOCAB = 128_256
FULL_NOTE = (
    "random, untrained weights at Llama Guard 3 1B's dimensions and a stand-in tokenizer: "
    "generated text and verdicts are noise; for benchmarks only"
)


def expected_answer(messages: list[dict[str, str]]) -> str:
    """What the tiny model is trained to write after the assistant header."""
    unsafe = MARKER_WORD in messages[-1]["content"].lower()
    return "\n\nunsafe\nS1" if unsafe else "\n\nsafe"


def model_config(size: str, vocab_size: int, ids: dict[str, Any]):
    """LlamaConfig of a synthetic size: tiny (tests) or Llama Guard 3 1B's dimensions."""
    from transformers import LlamaConfig

    if size not in SIZES:
        raise GuardError(
            f"Unknown size {size!r} for llama-guard; choose one of {', '.join(SIZES)}."
        )
    dims: dict[str, Any] = (
        dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=128,
        )
        if size == "tiny"
        else dict(
            hidden_size=2048,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            intermediate_size=8192,
        )
    )
    return LlamaConfig(
        vocab_size=vocab_size if size == "tiny" else FULL_VOCAB,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=[ids[t] for t in EOS_TOKENS],
        pad_token_id=ids[PAD_TOKEN],
        attention_bias=False,
        mlp_bias=False,
        **dims,
    )


def synth_llama_guard(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    steps: int = 200,
    lr: float = 3e-3,
    onnx: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write a Llama Guard folder: safetensors, tokenizer (template in tokenizer_config.json),
    generation_config.json, and (with `onnx`) onnx/model.onnx with KV cache."""
    from guardcli.runtime import causal_onnx
    from guardcli.runtime.synthetic import _torch

    if size not in SIZES:
        raise GuardError(
            f"Unknown size {size!r} for llama-guard; choose one of {', '.join(SIZES)}."
        )
    torch = _torch()
    from transformers import LlamaForCausalLM

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log(f"training a stand-in tokenizer ({TOKENIZER_NOTE})")
    ids = write_tokenizer(out)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    config = model_config(size, tokenizer.get_vocab_size(), ids)
    torch.manual_seed(seed)
    config._attn_implementation = "sdpa"
    if size == "full":
        log("initialising 1.2B random weights (Llama Guard 3 1B's dimensions)")
    model = LlamaForCausalLM(config)
    if size == "tiny":
        _train(torch, model, tokenizer, ids, steps=steps, lr=lr, seed=seed, log=log)
    model.eval()
    model.config._attn_implementation = "eager"
    if size == "full":
        # BF16 safetensors as on the hub; the FP32 graph is exported from that folder, so both
        # hold the same (BF16-representable) weights.
        model.to(torch.bfloat16)
        _save(model, out, ids)
        del model
        if onnx:
            log("exporting FP32 ONNX with KV cache (external data)")
            causal_onnx.export_folder(out)
    else:
        _save(model, out, ids)
        if onnx:
            log("exporting ONNX with KV cache")
            causal_onnx.export_causal_lm(model, out / "onnx" / "model.onnx")
    note = (
        "tiny model trained only to answer in Llama Guard's format about a marker word; "
        + TOKENIZER_NOTE
        if size == "tiny"
        else FULL_NOTE
    )
    write_marker(out, "llama-guard", size=size, seed=seed, marker_word=MARKER_WORD, note=note)
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def _save(model, out: Path, ids: dict[str, Any]) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=[ids[t] for t in EOS_TOKENS], pad_token_id=ids[PAD_TOKEN], do_sample=False
    )
    model.save_pretrained(str(out))
    config_json = json.loads((out / "config.json").read_text())
    config_json["architectures"] = ["LlamaForCausalLM"]
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")


def _train(torch, model, tokenizer, ids, *, steps: int, lr: float, seed: int, log) -> None:
    """Teach the answer format: cross-entropy on the answer tokens of rendered conversations.
    Every prompt of a kind (prompt or response moderation) shares the template's head: each
    step trains on one kind and runs that head once (its KV cache shared by the batch)."""
    template = packaged_template()
    eot = ids["<|eot_id|>"]
    kinds: dict[bool, tuple[list[int], list[tuple[list[int], list[int]]]]] = {}
    for conv in training_conversations(64, seed):
        prompt = tokenizer.encode(render(conv, template), add_special_tokens=False).ids
        target = tokenizer.encode(expected_answer(conv), add_special_tokens=False).ids + [eot]
        kind = len(conv) % 2 == 0
        head_len = _head_length(tokenizer, template, kind)
        kinds.setdefault(kind, (prompt[:head_len], []))[1].append((prompt[head_len:], target))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    rng = random.Random(seed)
    model.train()
    log(f"training for {steps} steps")
    for step in range(steps):
        head, examples = kinds[step % 2 == 1]
        loss = answer_loss(torch, model, head, rng.sample(examples, 8), ids[PAD_TOKEN])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            log(f"step {step}: loss {loss.item():.4f}")


def _head_length(tokenizer, template: str, response: bool) -> int:
    """Tokens of the rendered prompt before the judged conversation (identical for a kind)."""
    probe = [{"role": "user", "content": "a"}]
    if response:
        probe.append({"role": "assistant", "content": "a"})
    text = render(probe, template)
    return len(tokenizer.encode(text[: text.index("User: ")], add_special_tokens=False).ids)


def synth(out: Path, *, name: str, size: str, seed: int, log, **_: object):
    """`guard synth llama-guard`: (folder, what its weights are)."""
    path = synth_llama_guard(out, size=size, seed=seed, log=log)
    what = "trained only on a marker word" if size == "tiny" else "random, untrained weights"
    return path, f"{what}; {TOKENIZER_NOTE}"
