"""`guard export` for OpenCC folders: merge the LoRA into its base, wrap base + pooling at the
last real token + linear head into one module, export it to ONNX FP32 (TorchScript) and check it
against the torch + peft path the family runs.

The graph takes input_ids and attention_mask [batch, sequence] (right padding) and returns the
head's logits [batch, num_labels]; the family applies sigmoid/softmax and the thresholds, so the
thresholds sidecar and weight_frame.json stay the single source of both. Written beside it:
`onnx/opencc_export.json` (what was exported, from which adapter and head, and the parity found);
weight_frame.json is never changed.

Qwen3.5 bases (the real OpenCC base) are refused up front: their Gated DeltaNet linear-attention
layers do not export with torch.onnx today (TorchScript has no aten::linalg_solve_triangular, and
the dynamo exporter did not finish in 400 s on the 0.8B model).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from guardcli.core.batching import pad
from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import ExitCode, GuardError, input_error, require_torch
from guardcli.core.synthetic import SYNTHETIC_MARKER
from guardcli.core.tokenize import TextTokenizer
from guardcli.families.opencc import OPENCC_MARKER
from guardcli.families.opencc.frame import (
    EXPORT_INFO,
    OpenCCFrame,
    find_base,
    read_frame,
    sha256,
    tokenizer_dir,
)
from guardcli.families.opencc.guard import head_logits, rebuild
from guardcli.runtime.export_common import TOKENIZER_FILES, ExportResult, additive_causal_mask
from guardcli.runtime.synthetic import export_seqcls_onnx

DEFAULT_TOLERANCE = 1e-4
# Files an ONNX-only copy (--out) needs besides the graph: the frame, thresholds, marker.
FRAME_FILES = (
    "weight_frame.json",
    "train_config.json",
    "thresholds.json",
    "threshold.json",
    SYNTHETIC_MARKER,
)
TORCH_BACKEND_HINT = (
    "Run it with the torch backend instead: `guard classify -m DIR` does so by default "
    "(`guard classify -m DIR --backend torch`)."
)


def is_opencc_folder(path: Path) -> bool:
    return (Path(path) / OPENCC_MARKER).is_file()


def _base_config(base_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_qwen35(config: dict[str, Any], name: str = "") -> bool:
    """A Qwen3.5 base (model_type qwen3_5*, or any config with Gated DeltaNet
    `linear_attention` layers); by name when the base's config is not at hand."""
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    types = {str(config.get("model_type") or ""), str(text.get("model_type") or "")}
    layers = list(config.get("layer_types") or text.get("layer_types") or [])
    if any(t.startswith("qwen3_5") for t in types) or "linear_attention" in layers:
        return True
    return not config and "qwen3.5" in name.casefold()


def refuse_unexportable(frame: OpenCCFrame, base_dir: Path | None) -> None:
    """Raise before any work when the base's architecture is known not to export."""
    config = _base_config(base_dir) if base_dir is not None else {}
    if is_qwen35(config, frame.base_model):
        raise GuardError(
            f"{frame.path} sits on a Qwen3.5 base ({frame.base_model}), and Qwen3.5's Gated "
            "DeltaNet linear attention does not export to ONNX with torch.onnx today "
            "(TorchScript has no aten::linalg_solve_triangular; the dynamo exporter does not "
            "finish). Nothing was written.",
            hint=TORCH_BACKEND_HINT,
            code=ExitCode.MODEL,
        )


def export_module(model: Any, head: Any, torch: Any) -> Any:
    """(input_ids, attention_mask) -> head logits: the merged decoder with a 4-D causal mask
    (keeps transformers' mask machinery out of the trace), pooled at the last real token."""

    decoder = model.base_model  # the causal LM's decoder, without the vocabulary projection

    class OpenCCExport(torch.nn.Module):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            super().__init__()
            self.decoder = decoder
            self.head = head

        def forward(self, input_ids, attention_mask):
            hidden = self.decoder(
                input_ids=input_ids,
                attention_mask=additive_causal_mask(torch, attention_mask),
                use_cache=False,
            ).last_hidden_state
            last = input_ids.shape[1] - 1 - attention_mask.flip(1).argmax(1)
            return self.head(hidden[torch.arange(hidden.shape[0]), last].float())

    return OpenCCExport().eval()


def _copy_frame(frame: OpenCCFrame, out: Path, tokenizer_from: Path) -> None:
    """What an ONNX-only folder needs: the frame, thresholds, marker and tokenizer files."""

    for name in FRAME_FILES:
        if (frame.path / name).is_file():
            shutil.copyfile(frame.path / name, out / name)
    _copy_tokenizer(tokenizer_from, out, TOKENIZER_FILES)


def _copy_tokenizer(src: Path, out: Path, names: tuple[str, ...]) -> None:
    if src.resolve() == out.resolve():
        return
    for name in names:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)


def export_opencc(
    src: Path,
    out: Path | None = None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    prompts: tuple[str, ...] | None = None,
    log=lambda _: None,
) -> ExportResult:
    """Merge the LoRA of the OpenCC folder `src`, export base + pooling + head to
    `out/onnx/model.onnx` (default: inside `src`) and check it against torch + peft in FP32.

    `out` other than `src` becomes an ONNX-only folder (frame, thresholds, tokenizer, graph) that
    runs without torch, peft or the base. Raises GuardError (exit 3) for a base that does not
    export (Qwen3.5, said up front) and when max |Δ logit| is above `tolerance` (the files stay
    for a look)."""
    from guardcli.runtime.export_common import CHECK_PROMPTS, TOKENIZER_FILES, remove_stale_variants

    src = Path(src).expanduser()
    out = Path(out).expanduser() if out is not None else src
    if not src.is_dir():
        raise input_error(f"{src} is not a folder.")
    frame = read_frame(src)
    try:
        base_dir = find_base(frame)
    except GuardError:
        refuse_unexportable(frame, None)  # a Qwen3.5 base by name: say so rather than fetch it
        raise
    refuse_unexportable(frame, base_dir)
    torch = require_torch("Exporting an OpenCC model", peft=True)

    architecture = ",".join(_base_config(base_dir).get("architectures") or ["unknown"])
    tok_dir = tokenizer_dir(frame, base_dir)
    tokenizer = TextTokenizer(tok_dir, frame.max_length)
    ids, mask = pad(
        [e.ids for e in tokenizer.encode(list(prompts or CHECK_PROMPTS))], tokenizer.pad_id
    )
    input_ids, attention = torch.from_numpy(ids), torch.from_numpy(mask)

    log(f"rebuilding {frame.base_model} + LoRA + head from {src} (FP32)")
    model, head = rebuild(frame, base_dir, dtype="float32")
    with torch.no_grad():  # the family's own torch path, LoRA unmerged: the reference
        expected = head_logits(model, head, input_ids, attention).double().numpy()
    log("merging the LoRA into the base")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        merged = model.merge_and_unload()
    merged.set_attn_implementation("eager")
    module = export_module(merged, head, torch)

    out.mkdir(parents=True, exist_ok=True)
    graph = out / ONNX_VARIANT_FILES["fp32"]
    remove_stale_variants(out, log)
    log(f"exporting {architecture} to {graph}")
    try:
        with warnings.catch_warnings():  # the exporter's notes are not the user's business
            warnings.simplefilter("ignore")
            export_seqcls_onnx(
                module, graph, max_length=frame.max_length, example=(input_ids[:2], attention[:2])
            )
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise GuardError(
            f"The base of {src} ({architecture}) does not export to ONNX with torch.onnx "
            f"(TorchScript): {reason}",
            hint=TORCH_BACKEND_HINT,
            code=ExitCode.MODEL,
        ) from exc
    if out.resolve() != src.resolve():
        _copy_frame(frame, out, tok_dir)
    elif not (out / "tokenizer.json").is_file():
        # The graph runs without the base: keep its tokenizer beside the graph's folder.
        log(f"copying the tokenizer of {tok_dir} into {out}")
        _copy_tokenizer(tok_dir, out, TOKENIZER_FILES)

    log(f"checking against torch + peft on {len(ids)} prompts")
    diff = parity(graph, ids, mask, expected)
    info = {
        "exported_from": "opencc",
        "base_model": frame.base_model,
        "architecture": architecture,
        "lora_merged": True,
        "dtype": "float32",
        "pooling": "last_real_token",
        "inputs": ["input_ids", "attention_mask"],
        "padding": "right",
        "output": "logits",
        "num_labels": int(expected.shape[1]),
        "adapter_sha256": sha256(frame.adapter_file),
        "head_sha256": sha256(frame.head_file),
        "max_abs_diff": diff,
        "tolerance": tolerance,
        "prompts": len(ids),
    }
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=2) + "\n")
    result = ExportResult.checked(
        out,
        f"OpenCC on {architecture}",
        graph,
        diff,
        len(ids),
        tolerance,
        reference="torch + peft",
        hint=TORCH_BACKEND_HINT,
    )
    result.reference = "torch + peft"
    result.origin = f"{result.kind} with the LoRA merged"
    result.advice = "; run it with --backend onnxruntime"
    return result


def export_checkpoint(
    src: Path,
    out: Path | None,
    *,
    family: str | None = None,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] | None = None,
    log=lambda _: None,
) -> ExportResult:
    """`guard export` of an OpenCC folder: merge the LoRA, export, check against torch + peft."""
    if family is not None or max_length is not None:
        raise input_error("--family and --max-length do not apply to an OpenCC folder.")
    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    return export_opencc(src, out, tolerance=tolerance, log=log)


def parity(graph: Path, ids, mask, expected) -> float:
    """max |ONNX logits - reference logits| over a right-padded batch."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input_ids": ids, "attention_mask": mask})[0]
    if got.shape != expected.shape:
        raise GuardError(f"ONNX logits have shape {got.shape}, torch {expected.shape}.")
    return float(np.abs(got.astype(np.float64) - expected).max())
