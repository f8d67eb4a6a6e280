"""`guard export` (and `guard fetch` of the catalog's Qwen/Qwen3Guard-Stream-* entries, which ship
only safetensors) of a Qwen3Guard-Stream checkpoint: the graphs `guard synth` writes, FP32 with
KV cache (export.py) and its per-row INT8, beside the tokenizer and config.json.

The FP32 graph is checked against the PyTorch reference before it counts: a few neutral
conversations are fed to it the way a stream is (the user turn, then the answer one token, then
the rest, on the cache), and all four logit outputs at every position are compared with the
reference's one-shot forward over the whole conversation.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from guardcli.core.errors import input_error
from guardcli.core.synthetic import SYNTHETIC_MARKER
from guardcli.families.qwen3guard_stream.export import (
    FP32_GRAPH,
    INT8_GRAPH,
    LOGIT_OUTPUTS,
    export_module,
    quantize_folder,
)
from guardcli.families.qwen3guard_stream.labels import ANSWER_PREFIX, ASSISTANT_HEADER, USER_TURN
from guardcli.families.qwen3guard_stream.reference import read_config, weight_files
from guardcli.runtime.export_common import ExportResult, copy_tokenizer, remove_stale_variants

DEFAULT_TOLERANCE = 1e-4  # the bound on max |Δ logit| against the reference
# Neutral (prompt, answer) pairs: an answer with punctuation, digits and non-ASCII, and an empty
# prompt, so the check covers more than one token layout.
CHECK_CONVERSATIONS = (
    ("Tell me about a lighthouse.", "It stands on a rock and guides ships home at night."),
    ("", "Sure: 1. teacup, 2. compass (ribbon); ünïcödé done."),
    ("Ein Rezept für Apfelkuchen, bitte.", "Mehl, Zucker, Äpfel und Butter."),
)


def check_ids(tokenizer: Any) -> list[tuple[int, list[int]]]:
    """(length of the user turn, token ids of the whole conversation) per check conversation."""
    rows = []
    header = tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False).ids
    for prompt, answer in CHECK_CONVERSATIONS:
        user = tokenizer.encode(USER_TURN.format(prompt=prompt), add_special_tokens=False).ids
        rest = tokenizer.encode(ANSWER_PREFIX + answer, add_special_tokens=False).ids
        rows.append((len(user), user + header + rest))
    return rows


def reference_logits(module: Any, ids: list[int]) -> list[np.ndarray]:
    """The reference's four logit arrays [positions, classes], one forward, no cache."""
    import torch

    with torch.no_grad():
        out = module(input_ids=torch.tensor([ids]))
    return [getattr(out, name)[0].float().numpy() for name in LOGIT_OUTPUTS]


def streamed_logits(graph: Path, split: int, ids: list[int]) -> list[np.ndarray]:
    """The graph's four logit arrays, fed as a stream: the user turn, one token, the rest."""
    from guardcli.families.qwen3guard_stream.runners import OnnxRunner

    runner = OnnxRunner(graph, threads=None)
    parts = [runner.feed(p) for p in (ids[:split], ids[split : split + 1], ids[split + 1 :]) if p]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(LOGIT_OUTPUTS))]


def _link_weights(src: Path, out: Path, log) -> None:
    """The checkpoint's weights beside the graphs (the torch variant, bench's reference), as hard
    links where the filesystem allows, so that nothing is copied."""
    for path in weight_files(src):
        dest = out / path.name
        if dest.exists() or path.resolve() == dest.resolve():
            continue
        try:
            os.link(path.resolve(), dest)
        except OSError:
            log(f"not linking {path.name} (another filesystem): --variant torch runs {src}")
            return
    index = src / "model.safetensors.index.json"
    if index.is_file() and not (out / index.name).exists():
        shutil.copyfile(index, out / index.name)


def export_checkpoint(
    src: Path,
    out: Path,
    *,
    family: str | None = None,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] | None = None,
    log=lambda _: None,
) -> ExportResult:
    """`guard export` of a Qwen3Guard-Stream checkpoint into `out`: tokenizer files,
    config.json, onnx/model.onnx (FP32, checked against the reference) and
    onnx/model_quantized.onnx (every MatMul INT8, activations per row). GuardError (exit 3)
    when max |Δ logit| is above `tolerance`; the files stay for a look."""
    from tokenizers import Tokenizer

    from guardcli.families.qwen3guard_stream.reference import load_reference

    if max_length is not None:
        raise input_error(
            "--max-length does not apply to a Qwen3Guard-Stream checkpoint.",
            "Its context is config.json's max_position_embeddings; drop --max-length.",
        )
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    src, out = Path(src), Path(out)
    read_config(src)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_variants(out, log)
    copy_tokenizer([src], out)
    for name in ("config.json", SYNTHETIC_MARKER):
        if (src / name).exists():
            shutil.copyfile(src / name, out / name)
    _link_weights(src, out, log)
    log(f"reading {src} (Qwen3ForGuardModel, FP32)")
    module = load_reference(src)
    graph = out / FP32_GRAPH
    log(f"exporting with KV cache (GroupQueryAttention) to {graph}")
    export_module(module, graph)
    tokenizer = Tokenizer.from_file(str(out / "tokenizer.json"))
    rows = check_ids(tokenizer)
    log(f"checking the four logit outputs against the reference on {len(rows)} conversations")
    diff = 0.0
    for split, ids in rows:
        want = reference_logits(module, ids)
        for have, expected in zip(streamed_logits(graph, split, ids), want, strict=True):
            diff = max(diff, float(np.abs(have - expected).max()))
    result = ExportResult.checked(
        out,
        "qwen3guard-stream",
        graph,
        diff,
        len(rows),
        tolerance,
        reference="the PyTorch reference",
        hint="Rerun with GUARD_DEBUG=1 and report the model.",
    )
    result.origin = "from a Qwen3Guard-Stream checkpoint"
    log("quantizing INT8 (every MatMul, activations per row)")
    quantize_folder(out)
    agree = total = 0
    for split, ids in rows:
        want = reference_logits(module, ids)[0][split:].argmax(-1)
        have = streamed_logits(out / INT8_GRAPH, split, ids)[0][split:].argmax(-1)
        agree, total = agree + int((have == want).sum()), total + len(want)
    result.notes.append(
        f"INT8 {out / INT8_GRAPH} (every MatMul, activations per row): response risk argmax "
        f"equal to the reference on {agree}/{total} answer-side tokens"
    )
    return result
