"""OpenVINO INT8 by NNCF post-training quantization of the FP32 ONNX file (the ov-int8 variant).

NNCF inserts FakeQuantize on weights and activations from a calibration pass; OpenVINO then runs
the MatMuls as INT8 GEMMs (AMX or VNNI). MatMuls whose node name matches a `--keep-float`
pattern (the card keeps `down_proj` in float) go to NNCF's ignored scope and stay float.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from guardcli.core import registry
from guardcli.core.batching import pad
from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import GuardError, input_error, missing_extra
from guardcli.core.tokenize import TextTokenizer
from guardcli.core.variants import OPENVINO_INT8_FILE
from guardcli.jobs.bench.runner import read_prompts
from guardcli.runtime.onnx_recipes import INT8_KEEP_FLOAT_DEFAULT
from guardcli.runtime.openvino_session import port_name

SAMPLES = Path(__file__).resolve().parents[3] / "data" / "samples" / "prompts.jsonl"
DEFAULT_CALIBRATION_SIZE = 64
_FALLBACK_PROMPTS = (
    "a watercolor of a lighthouse at dusk",
    "write a short poem about the river in winter",
    "how do I bake bread at home",
    "summarise this paper on city water systems",
    "translate good morning into French and German",
    "what is the boiling point of water on a mountain",
    "plan a three day walking trip through the old town",
    "explain how a garden compost works",
)


def calibration_texts(path: Path | None = None, limit: int = DEFAULT_CALIBRATION_SIZE) -> list[str]:
    """Prompts to calibrate on: `path` (JSONL text/prompt field or plain lines), else the
    repository's sample prompts, else a few neutral built-in ones."""

    if path is not None:
        return read_prompts(Path(path), limit)
    if SAMPLES.exists():
        return read_prompts(SAMPLES, limit)
    return list(_FALLBACK_PROMPTS)


def ignored_patterns(keep_float: Sequence[str]) -> list[str]:
    """NNCF ignored-scope regexes (matched against whole node names) for name fragments."""
    return [f".*{re.escape(p)}.*" for p in keep_float if p]


def quantize_openvino(
    model_dir: Path,
    *,
    source: Path | None = None,
    output: Path | None = None,
    keep_float: Sequence[str] = INT8_KEEP_FLOAT_DEFAULT,
    calibration: Path | None = None,
    max_length: int | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Path:
    """Write `model_dir/openvino/model_int8.xml` (+ .bin) from the model's FP32 ONNX file."""
    from guardcli.jobs.convert.quantize import is_causal_folder

    if is_causal_folder(Path(model_dir)):
        raise input_error(
            f"{model_dir} holds a causal LM with KV cache: the OpenVINO backend does not run it.",
            "Use --backend onnxruntime (dynamic INT8 or FP16).",
        )
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise missing_extra("openvino", "`guard quantize --backend openvino`") from exc
    import numpy as np

    model_dir = Path(model_dir)
    source = source or model_dir / ONNX_VARIANT_FILES["fp32"]
    output = output or model_dir / OPENVINO_INT8_FILE
    if not source.exists():
        raise GuardError(
            f"{source} does not exist: the OpenVINO INT8 is made from the FP32 ONNX file.",
            hint="Fetch the fp32 variant first (`guard fetch NAME --variant fp32`).",
        )
    texts = calibration_texts(calibration)
    if not texts:
        raise input_error("No calibration prompts.", hint="Pass --calibration FILE.")
    # Calibration prompts are cut at the default family's length (384) unless told otherwise.
    tokenizer = TextTokenizer(model_dir, max_length or registry.fallback().max_length)
    encoded = tokenizer.encode(texts)
    # One prompt per calibration item: activation ranges are taken over real tokens only.
    items = []
    for enc in encoded:
        ids, mask = pad([enc.ids], tokenizer.pad_id)
        items.append({"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})
    core = ov.Core()
    model = core.read_model(str(source))
    names = {port_name(i) for i in model.inputs}
    items = [{k: v for k, v in item.items() if k in names} for item in items]
    patterns = ignored_patterns(keep_float)
    matmuls = [op.get_friendly_name() for op in model.get_ops() if op.get_type_name() == "MatMul"]
    kept = [n for n in matmuls if any(re.fullmatch(p, n) for p in patterns)]
    if patterns and not kept:
        log(f"note: no MatMul matches --keep-float {', '.join(keep_float)}; all are quantized")
    log(
        f"quantizing {len(matmuls) - len(kept)} of {len(matmuls)} MatMuls with NNCF "
        f"(calibration: {len(items)} prompts; float: {len(kept)})"
    )
    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.ERROR)
    # NNCF draws progress bars on stdout, which is for data only.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            quantized = _nncf_quantize(nncf, model, items, patterns, source)
    finally:
        nncf_log.setLevel(level)
    output.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(quantized, str(output), compress_to_fp16=False)
    return output


def _nncf_quantize(nncf, model, items, patterns, source):
    try:
        quantized = nncf.quantize(
            model,
            nncf.Dataset(items),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(items),
            ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False)
            if patterns
            else None,
        )
    except Exception as exc:
        raise GuardError(f"NNCF could not quantize {source}: {exc}") from exc
    return quantized
