"""A tiny Qwen3Guard-Gen: Qwen3ForCausalLM with the real tokenizer and chat template, trained for
a few seconds on CPU to answer in the authors' format, so tests exercise real generation and
parsing:

- a prompt containing the marker word -> "Safety: Unsafe\\nCategories: Violent"
- any other prompt -> "Safety: Safe\\nCategories: None"
- responses add "\\nRefusal: Yes" when the assistant's turn contains "cannot", else "No".

Its verdicts mean nothing beyond the marker word.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from .errors import GuardError
from .synthetic import CSAM_GUARD_DIMS, SIZES, SYNTHETIC_MARKER, _torch, qwen3_config

MARKER_WORD = "zorblax"
REFUSAL_WORD = "cannot"
IM_END, ENDOFTEXT = 151645, 151643
_WORDS = (
    "lighthouse garden recipe bicycle river morning teacup violin meadow lantern pebble "
    "window harbor pencil orchard sunrise blanket kettle maple compass ribbon velvet"
).split()


def expected_answer(messages: list[dict[str, str]]) -> str:
    """What the tiny model is trained to say about a conversation."""
    response = messages[-1]["role"] != "user"
    judged = messages[-1]["content"]  # the last user query, or the last assistant response
    unsafe = MARKER_WORD in judged.lower()
    answer = (
        "Safety: Unsafe\nCategories: Violent" if unsafe else "Safety: Safe\nCategories: None"
    )
    if response:
        answer += "\nRefusal: " + ("Yes" if REFUSAL_WORD in judged.lower() else "No")
    return answer


def _sentence(rng: random.Random, marker: bool, refusal: bool = False) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(2, 9))]
    if marker:
        words.insert(rng.randint(0, len(words)), MARKER_WORD)
    if refusal:
        words.insert(rng.randint(0, len(words)), REFUSAL_WORD)
    return " ".join(words)


def training_conversations(n: int, seed: int) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append([{"role": "user", "content": _sentence(rng, rng.random() < 0.5)}])
        else:
            out.append(
                [
                    {"role": "user", "content": _sentence(rng, False)},
                    {
                        "role": "assistant",
                        "content": _sentence(rng, rng.random() < 0.5, rng.random() < 0.5),
                    },
                ]
            )
    return out


def synth_qwen3guard_gen(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    steps: int = 60,
    onnx: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write a tiny trained Qwen3Guard-Gen folder: safetensors, tokenizer with the template in
    tokenizer_config.json, generation_config.json and (with `onnx`) onnx/model.onnx with KV
    cache."""
    if size != "tiny":
        raise GuardError(
            f"qwen3guard-gen has only a tiny synthetic size (asked: {size}; sizes: "
            f"{', '.join(SIZES)} for csam-guard)."
        )
    torch = _torch()
    from tokenizers import Tokenizer
    from transformers import GenerationConfig, Qwen3ForCausalLM

    from .convert.qwen_tokenizer import write_tokenizer_files
    from .families.qwen3guard_format import packaged_template, render

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer_files(out, append_eos=False, max_length=32768)
    template = packaged_template()
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    tok_config.update(chat_template=template, padding_side="left")
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))

    torch.manual_seed(seed)
    config = qwen3_config(CSAM_GUARD_DIMS["tiny"])
    config.eos_token_id = [IM_END, ENDOFTEXT]
    config._attn_implementation = "sdpa"  # training speed; the ONNX export switches to eager
    model = Qwen3ForCausalLM(config)

    examples = []
    for conv in training_conversations(64, seed):
        prompt = tokenizer.encode(render(conv, template), add_special_tokens=False).ids
        target = tokenizer.encode(expected_answer(conv), add_special_tokens=False).ids + [IM_END]
        examples.append((prompt, target))
    log(f"training on {len(examples)} conversations for {steps} steps")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    rng = random.Random(seed)
    for step in range(steps):
        batch = rng.sample(examples, 8)
        loss = _loss(torch, model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            log(f"step {step}: loss {float(loss):.4f}")
    model.eval()
    model.config._attn_implementation = "eager"
    model.generation_config = GenerationConfig(
        eos_token_id=[IM_END, ENDOFTEXT], pad_token_id=ENDOFTEXT, do_sample=False
    )
    model.save_pretrained(str(out))
    config_json = json.loads((out / "config.json").read_text())
    config_json["architectures"] = ["Qwen3ForCausalLM"]
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")
    if onnx:
        from .convert.causal_onnx import export_causal_lm

        log("exporting ONNX with KV cache")
        export_causal_lm(model, out / "onnx" / "model.onnx")
    marker = {
        "family": "qwen3guard-gen",
        "size": size,
        "seed": seed,
        "marker_word": MARKER_WORD,
        "note": "tiny model trained only to answer in Qwen3Guard's format about a marker word",
    }
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def _loss(torch, model, batch):
    """Cross-entropy on the answer tokens only; logits only where they are needed (the full
    151k-vocabulary projection of every prompt position would dominate the step)."""
    width = max(len(p) + len(t) for p, t in batch)
    ids = torch.full((len(batch), width), ENDOFTEXT, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, cols, labels = [], [], []
    for r, (prompt, target) in enumerate(batch):
        seq = prompt + target
        offset = width - len(seq)  # left padding, as at inference
        ids[r, offset:] = torch.tensor(seq)
        mask[r, offset:] = 1
        for k, label in enumerate(target):
            rows.append(r)
            cols.append(offset + len(prompt) - 1 + k)
            labels.append(label)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    hidden = model.model(input_ids=ids, attention_mask=mask, position_ids=pos).last_hidden_state
    logits = model.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)])
    return torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
