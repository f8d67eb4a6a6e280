"""The stand-in tokenizer `guard synth hf-seqcls` ships: no real vocabulary ships offline, so a
small tokenizer of the architecture's kind (WordPiece for BERT, byte-level BPE for RoBERTa and
ModernBERT, a Metaspace Unigram for DeBERTa-v2/v3 and XLM-R) is trained from a fixed neutral
corpus, with the architecture's special tokens and template, in transformers' file layout."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TINY_VOCAB = 600
TOKENIZER_NOTE = (
    "tokenizer trained on the fly on a neutral corpus (no real vocabulary ships offline); "
    "its special tokens and template are the architecture's"
)


# Special tokens in id order, the template's ends, and the pad token per architecture.
SPECIALS = {
    "bert": (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], "[CLS]", "[SEP]", "[PAD]", "[UNK]"),
    "deberta-v2": (
        ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"],
        "[CLS]",
        "[SEP]",
        "[PAD]",
        "[UNK]",
    ),
    "roberta": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s>", "</s>", "<pad>", "<unk>"),
    # XLM-R's SentencePiece vocabulary with fairseq's first four ids; <mask> is its last id.
    "xlm-roberta": (["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<s>", "</s>", "<pad>", "<unk>"),
    "modernbert": (
        ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
        "[CLS]",
        "[SEP]",
        "[PAD]",
        "[UNK]",
    ),
}

_WORDS = (
    "the a an of to in on for with and or but is was are were be been this that these those "
    "lighthouse teapot garden river mountain recipe bread apple cake soup weather morning "
    "evening train station ticket museum painting poem story chapter library book table chair "
    "window door kitchen coffee tea music piano guitar song city village harbour boat bridge "
    "summary question answer please thanks hello world ignore previous instructions system "
    "prompt reveal password translate write explain describe list compare plan trip schedule "
    "meeting report number date time one two three four five six seven eight nine ten"
).split()


def _corpus() -> list[str]:
    """A fixed, neutral corpus: every word, and deterministic sentences over them."""
    lines = [" ".join(_WORDS)]
    n = len(_WORDS)
    for i in range(400):
        lines.append(" ".join(_WORDS[(i * k + k * k) % n] for k in range(1, 12)).capitalize() + ".")
    return lines


def train_tokenizer(arch: str, vocab_size: int = TINY_VOCAB):
    """A `tokenizers.Tokenizer` of `arch`'s kind, trained on `_corpus()` (see the module doc)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    specials, cls, sep, _pad, unk = SPECIALS[arch]
    if arch == "bert":
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer: Any = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials)
    elif arch in ("deberta-v2", "xlm-roberta"):  # SentencePiece unigram
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size, special_tokens=specials, unk_token=unk
        )
    else:  # roberta, modernbert: byte-level BPE
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=arch == "roberta")
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    ids: dict[str, int] = {t: tok.token_to_id(t) or 0 for t in specials}
    if arch == "roberta":
        tok.post_processor = processors.RobertaProcessing((sep, ids[sep]), (cls, ids[cls]))
    elif arch == "xlm-roberta":  # transformers' XLMRobertaConverter's template
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} {sep} $B {sep}",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
        )
    else:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B {sep}",
            special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
        )
    return tok


def save_tokenizer(arch: str, out: Path, max_length: int, vocab_size: int = TINY_VOCAB) -> dict:
    """Write tokenizer.json + tokenizer_config.json (transformers' layout); the special ids."""
    from transformers import PreTrainedTokenizerFast

    tok = train_tokenizer(arch, vocab_size)
    specials, cls, sep, pad, unk = SPECIALS[arch]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token=cls,
        sep_token=sep,
        pad_token=pad,
        unk_token=unk,
        mask_token=specials[-1],
        bos_token=cls,
        eos_token=sep,
        model_max_length=max_length,
    )
    fast.save_pretrained(str(out))
    return {
        name: tok.token_to_id(tok_) for name, tok_ in (("cls", cls), ("sep", sep), ("pad", pad))
    }
