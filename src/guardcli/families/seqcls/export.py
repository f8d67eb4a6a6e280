"""`guard export`: a local transformers checkpoint -> ONNX FP32 in the CSAM-Guard layout.

Two kinds of source are read:

- a `*ForSequenceClassification` checkpoint (config.json + weights, e.g. a Qwen3 fine-tune):
  transformers' own pooling is kept, i.e. the logits at the rightmost token that is not the pad id;
- the card's PyTorch layout: `encoder/` (an AutoModel checkpoint, e.g. Qwen3-Embedding), `head.pt`
  (the MLP head's state_dict) and `model_config.json`::

      {"hidden": 1024, "head_hidden": 256, "num_labels": 2, "activation": "gelu",
       "pooling": "last_token", "max_length": 384, "id2label": {"0": "safe", "1": "unsafe"}}

  `hidden`, `num_labels` and `head_hidden` are checked against head.pt; `activation` (gelu, relu,
  silu, tanh; default gelu) sits between the head's Linear layers, taken from head.pt in
  state_dict order; `pooling` is `last_token` (the last token whose attention mask is 1);
  `max_length` and `id2label` are optional.

The output folder holds the tokenizer files, config.json (the encoder's, with id2label, and
`"guardcli": {"max_length": N, "exported_from": "seqcls"|"card"}`) and onnx/model.onnx
(inputs input_ids/attention_mask [batch, sequence], output logits [batch, num_labels], weights in
one external-data file when over 2 GB); FP16/INT8 variants of an earlier export are removed. The
export is checked against PyTorch before it counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from guardcli.core.batching import pad
from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import GuardError
from guardcli.core.tokenize import TextTokenizer
from guardcli.families.seqcls.checkpoint import (
    DEFAULT_TOLERANCE,
    ENCODER_DIR,
    EXPORT_FAMILIES,
    HEAD_FILE,
    MODEL_CONFIG,
    Source,
    _torch,
    load_source,
)
from guardcli.runtime.export_common import (
    CHECK_PROMPTS,
    CONFIG_KEY,
    ExportResult,
    copy_tokenizer,
    remove_stale_variants,
)
from guardcli.runtime.synthetic import export_seqcls_onnx

__all__ = ["EXPORT_FAMILIES", "export_checkpoint", "export_seqcls_checkpoint", "save_card_layout"]


# ---------------------------------------------------------------------------- writing


def write_config(source: Source, out: Path) -> None:
    config = dict(source.config)
    labels = source.id2label or {"0": "safe", "1": "unsafe"}
    config.update(
        id2label=labels,
        label2id={v: int(k) for k, v in labels.items()},
    )
    config[CONFIG_KEY] = {"max_length": source.max_length, "exported_from": source.kind}
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")


def check_prompts(out: Path, source: Source, prompts: tuple[str, ...]):
    """Token ids of `prompts` with the exported tokenizer, right-padded: (ids, mask)."""

    tok = TextTokenizer(out, source.max_length)
    return pad([e.ids for e in tok.encode(list(prompts))], tok.pad_id)


def parity(source: Source, graph: Path, ids, mask) -> float:
    """max |ONNX logits - PyTorch logits| over a padded batch."""
    import numpy as np
    import onnxruntime as ort

    torch = _torch()
    with torch.no_grad():
        expected = source.reference(torch.from_numpy(ids), torch.from_numpy(mask)).float().numpy()
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    if got.shape != expected.shape:
        raise GuardError(f"ONNX logits have shape {got.shape}, PyTorch {expected.shape}.")
    return float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())


def export_seqcls_checkpoint(
    src: Path,
    out: Path,
    *,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] = CHECK_PROMPTS,
    log=lambda _: None,
) -> ExportResult:
    """Export a classifier checkpoint `src` to `out` (CSAM-Guard layout), checked against
    PyTorch."""
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    log(f"reading {src}")
    source = load_source(src)
    if max_length is not None:
        source.max_length = max_length
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_variants(out, log)
    copy_tokenizer(source.tokenizer_dirs, out)
    write_config(source, out)
    graph = out / ONNX_VARIANT_FILES["fp32"]
    log(f"exporting {source.kind} to {graph}")
    export_seqcls_onnx(source.module, graph, max_length=source.max_length)
    ids, mask = check_prompts(out, source, prompts)
    log(f"checking against PyTorch on {len(prompts)} prompts")
    diff = parity(source, graph, ids, mask)
    return ExportResult.checked(
        out,
        source.kind,
        graph,
        diff,
        len(prompts),
        tolerance,
        reference="PyTorch",
        hint="Rerun with GUARD_DEBUG=1 and report the model's architecture; a custom head or "
        "pooling may need its own export wrapper.",
    )


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
    """`guard export` of a classifier (the family's entry in the registry)."""
    return export_seqcls_checkpoint(
        src,
        out,
        tolerance=tolerance,
        max_length=max_length,
        prompts=prompts or CHECK_PROMPTS,
        log=log,
    )


def save_card_layout(
    encoder: Any, head: Any, out: Path, *, max_length: int, activation: str = "gelu"
) -> Path:
    """Write the card's PyTorch layout: encoder/ (save_pretrained), head.pt, model_config.json.

    `head` is an nn.Sequential of Linear layers with `activation` between them."""
    torch = _torch()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    encoder.save_pretrained(str(out / ENCODER_DIR))
    torch.save(head.state_dict(), out / HEAD_FILE)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    cfg = {
        "hidden": linears[0].in_features,
        "head_hidden": linears[0].out_features,
        "num_labels": linears[-1].out_features,
        "activation": activation,
        "pooling": "last_token",
        "max_length": max_length,
        "id2label": {"0": "safe", "1": "unsafe"},
    }
    (out / MODEL_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
    return out
