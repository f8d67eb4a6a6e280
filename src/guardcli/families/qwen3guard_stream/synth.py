"""Synthetic Qwen3Guard-Stream models: the real config keys, weight names and label maps.

`tiny` (tests) is trained for a few seconds so that its verdicts can be predicted: a prompt
containing the marker word is Unsafe (Violent) at its <|im_end|>, and in an answer every token
from the marker word on is Unsafe (Violent), every token from the softer marker on is
Controversial (PII), and the rest are Safe. That is all it knows.

`full` has Qwen3Guard-Stream-0.6B's dimensions and random, untrained weights, saved in BF16 as
on the hub: it exists to benchmark runtimes, and its verdicts are noise.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError, require_torch
from guardcli.core.synthetic import SIZES, write_marker
from guardcli.families.qwen3guard_stream.labels import (
    ANSWER_PREFIX,
    ASSISTANT_HEADER,
    CONTROVERSIAL,
    SAFE,
    UNSAFE,
    USER_TURN,
    guard_config_keys,
)
from guardcli.families.qwen3guard_stream.reference import WEIGHTS, build_module

NAME = "qwen3guard-stream"
MARKER_WORD = "zorblax"
SOFT_MARKER_WORD = "quibblex"
VIOLENT, PII = 0, 4
QWEN3_VOCAB = 151_936
# (hidden, layers, heads, kv_heads, head_dim, intermediate, guard_inner, max_positions)
DIMS = {
    "tiny": (64, 2, 4, 2, 16, 128, 32, 8192),
    "full": (1024, 28, 16, 8, 128, 3072, 512, 8192),
}
FULL_NOTE = (
    "random, untrained weights at Qwen3Guard-Stream-0.6B's dimensions: verdicts are noise; "
    "for benchmarks only"
)
TINY_NOTE = "tiny model trained only to flag a marker word, token by token"
_WORDS = (
    "lighthouse garden recipe bicycle river morning teacup violin meadow lantern pebble "
    "window harbor pencil orchard sunrise blanket kettle maple compass ribbon velvet"
).split()


def model_config(size: str) -> dict[str, Any]:
    """config.json of a synthetic size, with the real Qwen3Guard-Stream keys (spec §2)."""
    if size not in SIZES:
        raise GuardError(f"Unknown size {size!r} for {NAME}; choose one of {', '.join(SIZES)}.")
    hidden, layers, heads, kv, head_dim, inter, inner, max_pos = DIMS[size]
    return {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "head_dim": head_dim,
        "intermediate_size": inter,
        "vocab_size": QWEN3_VOCAB,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000,
        "max_position_embeddings": max_pos,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "attention_bias": False,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        **guard_config_keys(inner),
    }


def synth_qwen3guard_stream(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    steps: int = 300,
    onnx: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write a Qwen3Guard-Stream folder: config.json, model.safetensors, tokenizer files and
    (with `onnx`) onnx/model.onnx with KV cache and the four logit outputs."""
    torch = require_torch("Building a synthetic Qwen3Guard-Stream")
    from safetensors.torch import save_file

    from guardcli.runtime.qwen_tokenizer import write_tokenizer_files

    start = time.perf_counter()
    config = model_config(size)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_tokenizer_files(out, append_eos=False, max_length=config["max_position_embeddings"])
    torch.manual_seed(seed)
    log(f"initialising {size} weights")
    module = build_module(config)
    if size == "tiny" and steps:
        _train(module, out, steps=steps, seed=seed, log=log)
    state = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
    if size == "full":
        state = {k: v.to(torch.bfloat16) for k, v in state.items()}
        config["torch_dtype"] = "bfloat16"
    else:
        config["torch_dtype"] = "float32"
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    del module, state
    if onnx:
        from guardcli.families.qwen3guard_stream.export import export_folder

        log("exporting FP32 ONNX with KV cache")
        export_folder(out)
    note = TINY_NOTE if size == "tiny" else FULL_NOTE
    extra = {"marker_word": MARKER_WORD, "soft_marker_word": SOFT_MARKER_WORD}
    write_marker(out, NAME, size=size, seed=seed, note=note, **(extra if size == "tiny" else {}))
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def _word(rng: random.Random) -> str:
    """A listed word or a made-up one, so that the marker is the only thing that matters."""
    if rng.random() < 0.5:
        return rng.choice(_WORDS)
    return "".join(rng.choice("abcdefghijklmnoprstuvwy") for _ in range(rng.randint(1, 8)))


def _sentence(rng: random.Random, *markers: str) -> str:
    words = [_word(rng) for _ in range(rng.randint(3, 10))]
    for marker in markers:
        words.insert(rng.randint(0, len(words)), marker)
    return " ".join(words)


def _example(tokenizer, rng: random.Random):
    """(ids, query label at the user's <|im_end|>, {position: (risk, category)} of the answer)."""
    prompt = _sentence(rng, *([MARKER_WORD] if rng.random() < 0.4 else []))
    roll = rng.random()
    markers = [MARKER_WORD] if roll < 0.35 else [SOFT_MARKER_WORD] if roll < 0.6 else []
    answer = _sentence(rng, *markers)
    user = tokenizer.encode(USER_TURN.format(prompt=prompt), add_special_tokens=False).ids
    header = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False).ids
    enc = tokenizer.encode(ANSWER_PREFIX + answer, add_special_tokens=False)
    query = (UNSAFE, VIOLENT) if MARKER_WORD in prompt else (SAFE, VIOLENT)
    labels: dict[int, tuple[int, int]] = {}
    hit = answer.find(markers[0]) + len(ANSWER_PREFIX) if markers else None
    base = len(user) + len(header)
    for i, (_, end) in enumerate(enc.offsets):
        if end <= len(ANSWER_PREFIX):
            continue
        if hit is not None and end > hit:
            risk = UNSAFE if markers[0] == MARKER_WORD else CONTROVERSIAL
            labels[base + i] = (risk, VIOLENT if risk == UNSAFE else PII)
        else:
            labels[base + i] = (SAFE, VIOLENT)
    return user + header + enc.ids, (len(user) - 1, query), labels


def _train(module, out: Path, *, steps: int, seed: int, log: Callable[[str], None]) -> None:
    """Per-token cross-entropy on both head stacks; the category is trained only where the risk
    is not Safe (a Safe token's category means nothing)."""
    import torch
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    rng = random.Random(seed)
    examples = [_example(tokenizer, rng) for _ in range(256)]
    # The random embeddings are features enough; their Adam update would dominate each step.
    module.model.embed_tokens.weight.requires_grad_(False)
    trained = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=3e-3)
    ce = torch.nn.functional.cross_entropy
    module.train()
    log(f"training for {steps} steps")
    for step in range(steps):
        batch = rng.sample(examples, 8)
        width = max(len(ids) for ids, _, _ in batch)
        ids = torch.full((len(batch), width), 151643, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, (seq, _, _) in enumerate(batch):
            ids[r, : len(seq)] = torch.tensor(seq)
            mask[r, : len(seq)] = 1
        out_ = module(input_ids=ids, attention_mask=mask)
        qr, qc = [], []
        rr, rc, rrisk, rcat = [], [], [], []
        for r, (_, (pos, (risk, cat)), labels) in enumerate(batch):
            qr.append(out_.query_risk_level_logits[r, pos])
            if risk != SAFE:
                qc.append((out_.query_category_logits[r, pos], cat))
            for p, (risk_p, cat_p) in labels.items():
                rr.append(out_.risk_level_logits[r, p])
                rrisk.append(risk_p)
                if risk_p != SAFE:
                    rc.append(out_.category_logits[r, p])
                    rcat.append(cat_p)
        loss = ce(torch.stack(qr), torch.tensor([b[1][1][0] for b in batch]))
        loss = loss + ce(torch.stack(rr), torch.tensor(rrisk))
        if qc:
            loss = loss + ce(torch.stack([q for q, _ in qc]), torch.tensor([c for _, c in qc]))
        if rc:
            loss = loss + ce(torch.stack(rc), torch.tensor(rcat))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            log(f"step {step}: loss {loss.item():.4f}")
    module.model.embed_tokens.weight.requires_grad_(True)
    module.eval()


def synth(out: Path, *, name: str, size: str, seed: int, log, **_: object) -> tuple[Path, str]:
    """`guard synth qwen3guard-stream`: (folder, what its weights are)."""
    path = synth_qwen3guard_stream(out, size=size, seed=seed, log=log)
    return path, "trained only on marker words" if size == "tiny" else "random, untrained weights"
