"""Synthetic Qwen3Guard-Gen models: Qwen3ForCausalLM with the real tokenizer and chat template.

`tiny` is trained for a few seconds on CPU to answer in the authors' format, so tests exercise
real generation and parsing:

- a prompt containing the marker word -> "Safety: Unsafe\\nCategories: Violent"
- any other prompt -> "Safety: Safe\\nCategories: None"
- responses add "\\nRefusal: Yes" when the assistant's turn contains "cannot", else "No".

Its verdicts mean nothing beyond the marker word.

`full` has Qwen3Guard-Gen-0.6B's real dimensions and random, untrained weights (BF16 safetensors
as on the hub, plus an FP32 ONNX export with KV cache): it exists to benchmark runtimes, and
what it generates is noise.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

from guardcli.core.errors import GuardError
from guardcli.core.paths import cache_dir
from guardcli.core.synthetic import SIZES, SYNTHETIC_MARKER, write_marker
from guardcli.families.qwen3guard_gen.format import packaged_template, render
from guardcli.runtime import causal_onnx
from guardcli.runtime.causal_onnx import export_folder
from guardcli.runtime.qwen_tokenizer import write_tokenizer_files
from guardcli.runtime.synthetic import (
    CSAM_GUARD_DIMS,
    EncoderDims,
    _torch,
    answer_loss,
    qwen3_config,
)

MARKER_WORD = "zorblax"
REFUSAL_WORD = "cannot"
IM_END, ENDOFTEXT = 151645, 151643
# Qwen3Guard-Gen-0.6B's config.json (= Qwen3-0.6B): the vocabulary is padded past the
# tokenizer's 151,669 tokens, and the context is 40,960 positions.
FULL_DIMS = EncoderDims(1024, 28, 16, 8, 128, 3072, 0)
FULL_VOCAB = 151_936
FULL_MAX_POSITIONS = 40_960
FULL_NOTE = (
    "random, untrained weights at Qwen3Guard-Gen-0.6B's dimensions: generated text and verdicts "
    "are noise; for benchmarks only"
)
_WORDS = (
    "lighthouse garden recipe bicycle river morning teacup violin meadow lantern pebble "
    "window harbor pencil orchard sunrise blanket kettle maple compass ribbon velvet"
).split()


def expected_answer(messages: list[dict[str, str]]) -> str:
    """What the tiny model is trained to say about a conversation."""
    response = messages[-1]["role"] != "user"
    judged = messages[-1]["content"]  # the last user query, or the last assistant response
    unsafe = MARKER_WORD in judged.lower()
    answer = "Safety: Unsafe\nCategories: Violent" if unsafe else "Safety: Safe\nCategories: None"
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


def model_config(size: str):
    """The Qwen3Config of a synthetic size: tiny (tests) or Qwen3Guard-Gen-0.6B's dimensions."""
    if size not in SIZES:
        raise GuardError(
            f"Unknown size {size!r} for qwen3guard-gen; choose one of {', '.join(SIZES)}."
        )
    if size == "tiny":
        config = qwen3_config(CSAM_GUARD_DIMS["tiny"])
    else:
        config = qwen3_config(FULL_DIMS)
        config.vocab_size = FULL_VOCAB
        config.max_position_embeddings = FULL_MAX_POSITIONS
    config.eos_token_id = [IM_END, ENDOFTEXT]
    return config


def synth_qwen3guard_gen(
    out: Path,
    *,
    size: str = "tiny",
    seed: int = 0,
    steps: int = 150,
    lr: float = 3e-3,
    onnx: bool = True,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write a Qwen3Guard-Gen folder: safetensors, tokenizer with the template in
    tokenizer_config.json, generation_config.json and (with `onnx`) onnx/model.onnx with KV
    cache. `tiny` is trained on a marker word; `full` keeps its random weights."""
    config = model_config(size)
    if size == "full":
        return _synth_full(Path(out), config, seed=seed, onnx=onnx, log=log)
    torch = _torch()
    from tokenizers import Tokenizer
    from transformers import Qwen3ForCausalLM

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_tokenizer(out)
    template = packaged_template()
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))

    torch.manual_seed(seed)
    config._attn_implementation = "sdpa"  # training speed; the ONNX export switches to eager
    model = Qwen3ForCausalLM(config)

    # Every prompt of a kind shares the template's head: encode it once per kind and train on
    # batches of one kind, running the head once per step (its KV cache is shared by the batch).
    kinds: dict[bool, tuple[list[int], list[tuple[list[int], list[int]]]]] = {}
    for conv in training_conversations(64, seed):
        ids = tokenizer.encode(render(conv, template), add_special_tokens=False).ids
        target = tokenizer.encode(expected_answer(conv), add_special_tokens=False).ids + [IM_END]
        kind = conv[-1]["role"] != "user"
        head_len = len(_head(tokenizer, template, kind))
        head, _ = kinds.setdefault(kind, (ids[:head_len], []))
        kinds[kind][1].append((ids[head_len:], target))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    log(f"training for {steps} steps")
    model.train()
    rng = random.Random(seed)
    for step in range(steps):
        head, examples = kinds[step % 2 == 1]
        loss = answer_loss(torch, model, head, rng.sample(examples, 8), ENDOFTEXT)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 20 == 0 or step == steps - 1:
            log(f"step {step}: loss {loss.item():.4f}")
    model.eval()
    model.config._attn_implementation = "eager"
    _save(model, out)
    if onnx:
        log("exporting ONNX with KV cache")
        causal_onnx.export_causal_lm(model, out / "onnx" / "model.onnx")
    write_marker(
        out,
        "qwen3guard-gen",
        size=size,
        seed=seed,
        marker_word=MARKER_WORD,
        note="tiny model trained only to answer in Qwen3Guard's format about a marker word",
    )
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def _write_tokenizer(out: Path) -> None:
    """The real tokenizer, with the chat template and left padding in tokenizer_config.json."""
    from guardcli.families.qwen3guard_gen.format import packaged_template

    write_tokenizer_files(out, append_eos=False, max_length=32768)
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    tok_config.update(chat_template=packaged_template(), padding_side="left")
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")


def _save(model, out: Path) -> None:
    from transformers import GenerationConfig

    model.generation_config = GenerationConfig(
        eos_token_id=[IM_END, ENDOFTEXT], pad_token_id=ENDOFTEXT, do_sample=False
    )
    model.save_pretrained(str(out))
    config_json = json.loads((out / "config.json").read_text())
    config_json["architectures"] = ["Qwen3ForCausalLM"]
    (out / "config.json").write_text(json.dumps(config_json, indent=2) + "\n")


def _synth_full(out: Path, config, *, seed: int, onnx: bool, log: Callable[[str], None]) -> Path:
    """Random weights at full size: no training (a step on 0.6B parameters would take minutes
    and teach nothing useful). Saved in BF16 like the hub's checkpoint; the ONNX graph is
    exported from that folder in FP32, so both hold the same (BF16-representable) weights."""
    torch = _torch()
    from transformers import Qwen3ForCausalLM
    from transformers.utils import logging as hf_logging

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    _write_tokenizer(out)
    torch.manual_seed(seed)
    log("initialising 0.6B random weights")
    model = Qwen3ForCausalLM(config).eval()
    model.config._attn_implementation = "eager"
    model.to(torch.bfloat16)
    _save(model, out)
    del model
    if onnx:
        log("exporting FP32 ONNX with KV cache (external data)")
        export_folder(out)
    write_marker(out, "qwen3guard-gen", size="full", seed=seed, note=FULL_NOTE)
    log(f"done in {time.perf_counter() - start:.1f}s")
    return out


def _head(tokenizer, template: str, response: bool) -> list[int]:
    """Token ids of the template's head (everything before the conversation) for a kind."""
    from guardcli.families.qwen3guard_gen.format import render

    probe = [{"role": "user", "content": "a"}]
    if response:
        probe.append({"role": "assistant", "content": "a"})
    text = render(probe, template)
    return tokenizer.encode(text[: text.index("USER: ")], add_special_tokens=False).ids


def cached_tiny_qwen3guard(*, seed: int = 0, log: Callable[[str], None] = lambda _: None) -> Path:
    """The tiny trained model, built once per machine under guardcli's cache dir (training takes
    tens of seconds on a busy CPU)."""
    return cached_qwen3guard("tiny", seed=seed, log=log)


def cached_qwen3guard(
    size: str, *, seed: int = 0, log: Callable[[str], None] = lambda _: None
) -> Path:
    """A synthetic model built once per machine under guardcli's cache dir, keyed by this
    module's source, the template and the seed (`full` takes minutes and ~4 GB on disk)."""
    import hashlib
    import os
    import shutil
    import tempfile

    from guardcli.families.qwen3guard_gen.format import packaged_template

    model_config(size)  # validates the size before anything is built
    key = hashlib.sha256(
        Path(__file__).read_bytes() + packaged_template().encode() + str(seed).encode()
    ).hexdigest()[:16]
    path = cache_dir() / "synthetic" / f"qwen3guard-gen-{size}-{key}"
    if (path / SYNTHETIC_MARKER).exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".build-"))
    try:
        synth_qwen3guard_gen(tmp / "model", size=size, seed=seed, log=log)
        try:
            os.replace(tmp / "model", path)  # atomic: concurrent builders never see half a model
        except OSError:
            if not (path / SYNTHETIC_MARKER).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def synth(out: Path, *, name: str, size: str, seed: int, log, **_: object):
    """`guard synth qwen3guard-gen`: (folder, what its weights are)."""
    path = synth_qwen3guard_gen(out, size=size, seed=seed, log=log)
    return path, "trained only on a marker word" if size == "tiny" else "random, untrained weights"
