"""`guard export` of a Llama Guard checkpoint (LlamaForCausalLM with its chat template): the
layout the family runs (tokenizer files with the template, config.json, generation_config.json,
onnx/model.onnx with KV cache), checked against transformers before it counts: next-token
logits of rendered prompt- and response-moderation prompts (max |Δ logit| <= --tolerance), and
greedy generation token for token."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import ExitCode, GuardError, input_error, require_torch
from guardcli.core.synthetic import SYNTHETIC_MARKER
from guardcli.families.llama_guard import format as fmt
from guardcli.runtime import causal_onnx
from guardcli.runtime.export_common import (
    CONFIG_KEY,
    ExportResult,
    copy_tokenizer,
    remove_stale_variants,
)

DEFAULT_TOLERANCE = 1e-3
EXTRA_FILES = ("config.json", "generation_config.json", "chat_template.jinja", SYNTHETIC_MARKER)
# Neutral conversations: prompts of different lengths (a padded batch) and a response.
CHECK_CONVERSATIONS = (
    [{"role": "user", "content": "A watercolor of a lighthouse at dusk."}],
    [
        {"role": "user", "content": "How do I bake bread?"},
        {"role": "assistant", "content": "Mix flour, water and yeast; let it rise."},
    ],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "Ein Rezept für Apfelkuchen, bitte."}],
)
GENERATION_CHECKS = 3


def _check_prompts(out: Path) -> list[list[int]]:
    from tokenizers import Tokenizer

    template = fmt.model_template(out)
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    texts = [fmt.render(list(conv), template) for conv in CHECK_CONVERSATIONS]
    return [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


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
    """Export the Llama Guard checkpoint at `src` to `out`; a GuardError (exit 3) when the graph
    differs from transformers (the files stay for a look)."""
    import numpy as np

    from guardcli.runtime.causal_lm import MAX_NEW_TOKENS, OnnxCausalLM, left_pad, positions

    if max_length is not None:
        raise input_error("--max-length applies to classifiers, not to a causal LM.")
    if fmt.folder_template(src) is None:
        raise input_error(
            f"{src} has no Llama Guard chat template (tokenizer_config.json or "
            "chat_template.jinja with its category list).",
            "Export the checkpoint as Meta ships it, with its tokenizer files.",
        )
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    torch = require_torch("Exporting a causal LM")

    out.mkdir(parents=True, exist_ok=True)
    remove_stale_variants(out, log)
    copy_tokenizer([src], out)
    for name in EXTRA_FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, out / name)
    config_path = out / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config[CONFIG_KEY] = {"exported_from": "causal-lm", "family": "llama-guard"}
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    graph = out / ONNX_VARIANT_FILES["fp32"]
    model = causal_onnx.load_and_export(src, graph, what="llama-guard", log=log)

    checks = _check_prompts(out)
    lm = OnnxCausalLM(graph, out)
    ids, mask = left_pad(checks, lm.pad_id)
    log(f"checking next-token logits against transformers on {len(checks)} prompts")
    with torch.no_grad():
        expected = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(positions(mask)),
            logits_to_keep=1,
        ).logits[:, -1]
    got = lm.next_logits(checks)
    diff = float(np.abs(got.astype(np.float64) - expected.double().numpy()).max())
    result = ExportResult.checked(
        out,
        "causal-lm",
        graph,
        diff,
        len(checks),
        tolerance,
        reference="transformers",
        hint="Rerun with GUARD_DEBUG=1 and report the model.",
    )
    few = checks[:GENERATION_CHECKS]
    log(f"checking greedy generation against transformers on {len(few)} prompts")
    tokens = 0
    for row, prompt in enumerate(few, start=1):
        with torch.no_grad():
            generated = model.generate(
                input_ids=torch.tensor([prompt]),
                attention_mask=torch.ones((1, len(prompt)), dtype=torch.long),
                do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS,
                pad_token_id=lm.pad_id,
                eos_token_id=lm.eos_ids,
            )[0, len(prompt) :].tolist()
        ends = [i for i, t in enumerate(generated) if t in lm.eos_ids]
        want = generated[: ends[0] + 1] if ends else generated
        tokens += len(want)
        if lm.generate([prompt], MAX_NEW_TOKENS)[0] != want:
            raise GuardError(
                f"Greedy generation with the ONNX export differs from transformers on check "
                f"prompt {row}.",
                hint=f"Do not ship {graph}. Rerun with GUARD_DEBUG=1 and report the model.",
                code=ExitCode.MODEL,
            )
    result.notes.append(
        f"greedy generation equal to transformers on {len(few)} prompts ({tokens} new tokens)"
    )
    return result


def is_llama_guard_checkpoint(src: Path) -> bool:
    """A LlamaForCausalLM whose chat template carries Llama Guard's category list."""
    from guardcli.families.llama_guard.resolve import is_llama_guard_folder

    return is_llama_guard_folder(Path(src))
