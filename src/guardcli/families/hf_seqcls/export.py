"""Encoder `*ForSequenceClassification` checkpoints -> ONNX, checked against transformers.

The graph takes input_ids and attention_mask [batch, sequence] (and token_type_ids where the
model has token types, e.g. BERT), with dynamic batch and sequence axes, and returns
transformers' own logits [batch, num_labels]: the model's pooling and head are exported as they
are (no causal mask, no last-token pooling: that is the seqcls family's decoder path).
"""

from __future__ import annotations

import inspect
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import input_error, require_torch
from guardcli.families.hf_seqcls.detect import CONFIG_KEY, NAME
from guardcli.runtime.export_common import CHECK_PROMPTS, TOKENIZER_FILES, ExportResult

OPSET = 17
DEFAULT_TOLERANCE = 1e-4
MAX_SANE_LENGTH = 32_768


@dataclass
class EncoderSource:
    module: Any  # what is exported: (input_ids, attention_mask[, token_type_ids]) -> logits
    model: Any  # the transformers model (the reference)
    input_names: list[str]
    max_length: int
    config: dict[str, Any]


def takes_token_types(model: Any) -> bool:
    """Whether the model's forward has token_type_ids that select an embedding."""
    params = inspect.signature(model.forward).parameters
    return "token_type_ids" in params and (getattr(model.config, "type_vocab_size", 0) or 0) > 0


def model_max_length(src: Path, config: dict[str, Any]) -> int:
    """The tokenizer's model_max_length when it is a real limit, else the position table's."""
    path = src / "tokenizer_config.json"
    if path.exists():
        value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length")
        if isinstance(value, int) and 0 < value <= MAX_SANE_LENGTH:
            return value
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and positions > 0:
        # RoBERTa-style position tables start after the pad id: two slots are not positions.
        offset = 2 if config.get("model_type") in ("roberta", "xlm-roberta", "camembert") else 0
        return min(positions - offset, 512)
    return 512


def load_encoder(src: Path) -> EncoderSource:
    torch = require_torch("Exporting a checkpoint")
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(src), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    names = ["input_ids", "attention_mask"]
    if takes_token_types(model):
        names.append("token_type_ids")

    class EncoderExport(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    config = model.config.to_dict()
    return EncoderSource(
        EncoderExport().eval(), model, names, model_max_length(src, config), config
    )


def reference_logits(model: Any, ids, mask):
    """transformers' logits for right-padded (ids, mask) numpy arrays, token types all 0."""
    import numpy as np

    torch = require_torch("Checking an export")
    extra = {}
    if takes_token_types(model):
        extra["token_type_ids"] = torch.zeros(ids.shape, dtype=torch.int64)
    with torch.no_grad():
        out = model(
            input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **extra
        ).logits
    return np.asarray(out.float().numpy(), dtype=np.float64)


def export_hf_seqcls(
    src: Path,
    out: Path,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    max_length: int | None = None,
    prompts: tuple[str, ...] = CHECK_PROMPTS,
    log: Callable[[str], None] = lambda _: None,
) -> ExportResult:
    """Export `src` to `out`/onnx/model.onnx and check it against transformers on a padded batch
    of `prompts` (GuardError, exit 3, when max |Δ logit| > `tolerance`). `out` may be `src`."""
    import numpy as np

    from guardcli.core.batching import pad
    from guardcli.core.tokenize import TextTokenizer
    from guardcli.runtime.export_common import remove_stale_variants
    from guardcli.runtime.onnx_recipes import export_torchscript
    from guardcli.runtime.onnx_session import feed_for

    torch = require_torch("Exporting a checkpoint")
    src, out = Path(src).expanduser(), Path(out).expanduser()
    if not (src / "config.json").is_file():
        raise input_error(f"{src} has no config.json: not a transformers checkpoint.")
    source = load_encoder(src)
    if max_length is not None:
        source.max_length = max_length
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != src.resolve():
        for name in TOKENIZER_FILES:
            if (src / name).exists():
                shutil.copyfile(src / name, out / name)
    if not (out / "tokenizer.json").exists():
        raise input_error(
            f"No tokenizer.json in {src}.",
            "guardcli runs fast tokenizers: save one with "
            "AutoTokenizer.from_pretrained(...).save_pretrained(SRC).",
        )
    remove_stale_variants(out, log)
    config = dict(source.config)
    config[CONFIG_KEY] = {"max_length": source.max_length, "exported_from": NAME}
    (out / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")

    tok = TextTokenizer(out, source.max_length)
    ids, mask = pad([e.ids for e in tok.encode(list(prompts))], tok.pad_id)
    example = tuple(
        torch.from_numpy(a) for a in (ids, mask, np.zeros_like(ids))[: len(source.input_names)]
    )
    graph = out / ONNX_VARIANT_FILES["fp32"]
    axes = {name: {0: "batch", 1: "sequence"} for name in source.input_names}
    log(f"exporting {config.get('model_type')} to {graph}")
    export_torchscript(
        source.module,
        example,
        graph,
        input_names=source.input_names,
        output_names=["logits"],
        dynamic_axes={**axes, "logits": {0: "batch"}},
        opset_version=OPSET,
    )
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(["logits"], feed_for(names, ids, mask, graph))[0].astype(np.float64)
    expected = reference_logits(source.model, ids, mask)
    diff = float(np.abs(got - expected).max()) if got.shape == expected.shape else float("inf")
    return ExportResult.checked(
        out,
        NAME,
        graph,
        diff,
        len(prompts),
        tolerance,
        reference="transformers",
        hint="Report the model's architecture; it may need an export wrapper of its own.",
    )


def make_variants(
    model_dir: Path, variants: list[str], *, log: Callable[[str], None] = lambda _: None
) -> None:
    """FP16 (norms kept FP32 where the recipe finds them) and INT8 (weights per channel,
    activations per row: batch-invariant) from onnx/model.onnx, by the existing recipes."""
    from guardcli.runtime.onnx_recipes import to_fp16, to_int8_dynamic

    fp32 = model_dir / ONNX_VARIANT_FILES["fp32"]
    if "fp16" in variants:
        log("converting FP16")
        to_fp16(fp32, model_dir / ONNX_VARIANT_FILES["fp16"])
    if "int8" in variants:
        log("quantizing INT8 (activations per row)")
        to_int8_dynamic(fp32, model_dir / ONNX_VARIANT_FILES["int8"], keep_float=())


def export_checkpoint(
    src: Path,
    out: Path,
    *,
    tolerance: float | None = None,
    max_length: int | None = None,
    prompts: tuple[str, ...] = CHECK_PROMPTS,
    log: Callable[[str], None] = lambda _: None,
    **_: object,
) -> ExportResult:
    """`guard export` of an encoder checkpoint (the family's registry `export` recipe)."""
    return export_hf_seqcls(
        src,
        out,
        tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
        max_length=max_length,
        prompts=prompts,
        log=log,
    )
