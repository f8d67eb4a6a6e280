"""The stand-in tokenizer of synthetic Llama Guard models, and the conversations it and the tiny
model are trained on: no Llama 3 vocabulary ships offline
with guardcli's dependencies, so a small byte-level BPE is trained on the fly with Llama 3's
pre-tokenizer pattern and special tokens, on the template's own text and neutral sentences.
"safe", "unsafe" and "\\n\\n" are single tokens, as in Llama 3's; ids and counts differ."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError
from guardcli.families.llama_guard.format import packaged_template, render

TINY_VOCAB = 800
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|finetune_right_pad_id|>",
)
EOS_TOKENS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
PAD_TOKEN = "<|finetune_right_pad_id|>"
# Llama 3's pre-tokenizer pattern (tiktoken's, as its tokenizer.json splits).
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TOKENIZER_NOTE = (
    "stand-in tokenizer: a small byte-level BPE trained on the fly with Llama 3's special tokens "
    "and pre-tokenizer (no Llama 3 vocabulary ships offline); token ids differ from the real one"
)


# Neutral words the synthetic models' conversations are made of (and the tiny model's marker).
WORDS = (
    "lighthouse garden recipe bicycle river morning teacup violin meadow lantern pebble "
    "window harbor pencil orchard sunrise blanket kettle maple compass ribbon velvet "
    "how do I bake bread please explain the plot of a novel write a poem about"
).split()


MARKER_WORD = "zorblax"


def _sentence(rng: random.Random, marker: bool) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 9))]
    if marker:
        words.insert(rng.randint(0, len(words)), MARKER_WORD)
    return " ".join(words)


def training_conversations(n: int, seed: int) -> list[list[dict[str, str]]]:
    """Prompt and response conversations over WORDS, half of each kind with the marker word in
    the judged turn (the tiny model's training data; the tokenizer's corpus too)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 2 == 0:
            out.append([{"role": "user", "content": _sentence(rng, rng.random() < 0.5)}])
        else:
            out.append(
                [
                    {"role": "user", "content": _sentence(rng, False)},
                    {"role": "assistant", "content": _sentence(rng, rng.random() < 0.5)},
                ]
            )
    return out


def _corpus(template: str) -> list[str]:
    texts = [render(conv, template) for conv in training_conversations(40, 1)]
    texts += ["safe", "unsafe", "\n\nsafe", "\n\nunsafe\nS1,S2"] * 50
    texts.append(" ".join(WORDS))
    return texts


def train_tokenizer(vocab_size: int = TINY_VOCAB):
    """A byte-level BPE with Llama 3's pre-tokenizer and special tokens (ids 0-6)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(packaged_template()), trainer=trainer)
    for word in ("safe", "unsafe", "\n\n"):
        if len(tok.encode(word, add_special_tokens=False).ids) != 1:
            raise GuardError(f"The stand-in tokenizer split {word!r}; report this.")
    return tok


def write_tokenizer(out: Path, vocab_size: int = TINY_VOCAB) -> dict[str, Any]:
    """tokenizer.json + tokenizer_config.json (with the 3-1B chat template); the special ids."""
    tok = train_tokenizer(vocab_size)
    tok.save(str(out / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": PAD_TOKEN,
        "model_max_length": 131072,
        "clean_up_tokenization_spaces": True,
        "chat_template": packaged_template(),
        "added_tokens_decoder": {
            str(i): {
                "content": t,
                "special": True,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "single_word": False,
            }
            for t, i in ids.items()
        },
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return ids
