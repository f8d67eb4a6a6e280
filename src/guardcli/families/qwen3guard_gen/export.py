"""`guard export` for generative guards: a transformers causal-LM checkpoint -> the ONNX layout
the family runs (tokenizer files with the chat template, config.json, generation_config.json,
onnx/model.onnx with KV cache; weights in one external-data file above 2 GB).

The export is checked against transformers before it counts:

- logits of the next token after a left-padded batch of rendered prompts (prompt and response
  moderation), max |Δ logit| against --tolerance;
- greedy generation, token for token, on a few of those prompts (the family's reference decoding:
  stop at EOS or after 128 new tokens).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import ExitCode, GuardError, input_error, require_torch
from guardcli.core.synthetic import SYNTHETIC_MARKER
from guardcli.families.qwen3guard_gen.format import model_template
from guardcli.runtime import causal_onnx
from guardcli.runtime.export_common import (
    CONFIG_KEY,
    ExportResult,
    copy_tokenizer,
    remove_stale_variants,
)

# family -> the architectures its runtime (runtime.causal_lm, hub's generative resolution) runs.
CAUSAL_FAMILIES: dict[str, tuple[str, ...]] = {"qwen3guard-gen": ("Qwen3ForCausalLM",)}
# After 28 layers over a 151k vocabulary FP32 kernels drift more than a classifier's 2 logits.
DEFAULT_TOLERANCE = 1e-3
EXTRA_FILES = ("config.json", "generation_config.json", SYNTHETIC_MARKER)
GENERATION_CHECKS = 3
# Neutral conversations: prompt moderation of different lengths (a padded batch) and response
# moderation, which renders the template's other branch.
CHECK_CONVERSATIONS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "A watercolor of a lighthouse at dusk."),),
    (("user", "How do I bake bread?"), ("assistant", "Mix flour, water and yeast; let it rise.")),
    (("user", "hi"),),
    (("user", "Ein Rezept für Apfelkuchen, bitte."),),
    (
        ("user", "Summarise the plot of a detective novel set in 1920s Shanghai."),
        ("assistant", "I cannot summarise a book I have not read."),
    ),
    (("user", "¿Cuál es la capital de Australia?\n"),),
)


def architectures(src: Path) -> list[str]:
    config = src / "config.json"
    if not config.is_file():
        return []
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise input_error(f"Cannot read {config}: {exc}") from None
    return [str(a) for a in (data.get("architectures") or [])] if isinstance(data, dict) else []


def is_causal_lm(src: Path) -> bool:
    return any(a.endswith("ForCausalLM") for a in architectures(Path(src)))


def causal_family(src: Path, family: str | None = None) -> str:
    """The generative family `src` exports to; input errors for what guardcli cannot run."""

    archs = architectures(src)
    if family is not None and family not in CAUSAL_FAMILIES:
        raise input_error(
            f"--family {family} is not a generative family.",
            f"Causal LMs export to: {', '.join(CAUSAL_FAMILIES)}.",
        )
    wanted = [family] if family else list(CAUSAL_FAMILIES)
    for name in wanted:
        if any(a in CAUSAL_FAMILIES[name] for a in archs):
            if family is None and "Safety: Controversial" not in model_template(src):
                raise input_error(
                    f"{src} is a {', '.join(archs)} without Qwen3Guard's chat template.",
                    "Pass --family qwen3guard-gen to export it with Qwen3Guard-Gen's template.",
                )
            return name
    supported = ", ".join(f"{a} ({f})" for f, arcs in CAUSAL_FAMILIES.items() for a in arcs)
    raise input_error(
        f"{src} is a {', '.join(archs) or 'model without architectures in config.json'}: "
        f"guard export runs causal LMs of {supported} only.",
        "Other architectures need their own runtime; sequence classifiers "
        "(*ForSequenceClassification) export as classifiers.",
    )


def copy_files(src: Path, out: Path, log) -> None:
    """Tokenizer files, config.json, generation_config.json (and a synthetic marker), and the
    family's chat template when the source has none of its own."""
    from guardcli.families.qwen3guard_gen.format import model_template, packaged_template

    copy_tokenizer([src], out)
    for name in EXTRA_FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, out / name)
    if "Safety: Controversial" not in model_template(out):
        log("no Qwen3Guard template in the checkpoint: writing the authors' chat_template.jinja")
        (out / "chat_template.jinja").write_text(packaged_template(), encoding="utf-8")


def tag_config(out: Path, family: str) -> None:

    path = out / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[CONFIG_KEY] = {"exported_from": "causal-lm", "family": family}
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def check_prompts(out: Path) -> list[list[int]]:
    """Token ids of the check conversations rendered with the exported template and tokenizer."""
    from tokenizers import Tokenizer

    from guardcli.families.qwen3guard_gen.format import model_template, render

    template = model_template(out)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    texts = [
        render([{"role": r, "content": c} for r, c in conv], template)
        for conv in CHECK_CONVERSATIONS
    ]
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def reference_logits(torch: Any, model: Any, prompts: list[list[int]], pad_id: int):
    """transformers' next-token logits for a left-padded batch (2-D mask, positions as
    `generate` makes them)."""
    from guardcli.runtime.causal_lm import left_pad

    ids, mask = left_pad(prompts, pad_id)
    position_ids = torch.from_numpy(mask).long().cumsum(-1) - 1
    position_ids.masked_fill_(torch.from_numpy(mask) == 0, 1)
    with torch.no_grad():
        logits = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=position_ids,
            logits_to_keep=1,  # the full [B, L, vocab] would be GBs for a real model
        ).logits
    return logits[:, -1].float().numpy()


def reference_generate(torch, model, prompts, pad_id, eos_ids, max_new_tokens) -> list[list[int]]:
    """transformers' greedy `generate` (the family's reference decoding), cut after EOS."""
    from guardcli.runtime.causal_lm import left_pad

    ids, mask = left_pad(prompts, pad_id)
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            do_sample=False,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=eos_ids,
        )
    rows = []
    for row in out[:, ids.shape[1] :].tolist():
        ends = [i for i, t in enumerate(row) if t in eos_ids]
        rows.append(row[: ends[0] + 1] if ends else row)
    return rows


def export_causal_checkpoint(
    src: Path,
    out: Path,
    *,
    family: str | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    log=lambda _: None,
):
    """Export the causal LM at `src` to `out` and check it against transformers.

    Raises GuardError (exit 3) when max |Δ logit| is above `tolerance` or greedy generation
    differs; the files stay for a look."""
    import numpy as np

    from guardcli.runtime.causal_lm import MAX_NEW_TOKENS, OnnxCausalLM, stop_ids

    torch = require_torch("Exporting a causal LM")

    family = causal_family(src, family)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_variants(out, log)
    copy_files(src, out, log)
    tag_config(out, family)
    pad_id, eos_ids = stop_ids(out)
    graph = out / ONNX_VARIANT_FILES["fp32"]
    model = causal_onnx.load_and_export(src, graph, what=family, log=log)

    prompts = check_prompts(out)
    log(f"checking next-token logits against transformers on {len(prompts)} prompts")
    lm = OnnxCausalLM(graph, out)
    expected = reference_logits(torch, model, prompts, pad_id)
    got = lm.next_logits(prompts)
    diff = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
    result = ExportResult.checked(
        out,
        "causal-lm",
        graph,
        diff,
        len(prompts),
        tolerance,
        reference="transformers",
        hint="Rerun with GUARD_DEBUG=1 and report the model.",
    )
    few = prompts[:GENERATION_CHECKS]
    log(f"checking greedy generation against transformers on {len(few)} prompts")
    want = reference_generate(torch, model, few, pad_id, eos_ids, MAX_NEW_TOKENS)
    have = lm.generate(few, MAX_NEW_TOKENS)
    for row, (a, b) in enumerate(zip(have, want, strict=True)):
        if a != b:
            pairs = zip(a, b, strict=False)
            at = next((i for i, (x, y) in enumerate(pairs) if x != y), min(len(a), len(b)))
            raise GuardError(
                f"Greedy generation with the ONNX export differs from transformers on check "
                f"prompt {row + 1} at new token {at + 1}.",
                hint=f"Do not ship {graph}. Rerun with GUARD_DEBUG=1 and report the model.",
                code=ExitCode.MODEL,
            )
    tokens = sum(len(w) for w in want)
    result.notes.append(
        f"greedy generation equal to transformers on {len(few)} prompts ({tokens} new tokens)"
    )
    return result


def export_checkpoint(
    src: Path,
    out: Path,
    *,
    family: str | None = None,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] | None = None,
    log=lambda _: None,
):
    """`guard export` of a causal LM: the KV-cache layout its family runs."""
    if max_length is not None:
        raise input_error("--max-length applies to classifiers, not to a causal LM.")
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    return export_causal_checkpoint(src, out, family=family, tolerance=tolerance, log=log)
