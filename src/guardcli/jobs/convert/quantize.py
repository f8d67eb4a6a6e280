"""`guard quantize`: the FP16 and INT8 variants of a model folder's FP32 ONNX graph.

FP16 and dynamic INT8 follow the model card (see onnx_recipes); dynamic INT8 quantizes
activations per row, so a text's score does not depend on its batch (runtime.int8_rows).
Static INT8 is a calibrated QDQ graph: MatMul activations get fixed scales measured (MinMax)
on calibration texts tokenized with the model's own tokenizer, weights are per-channel QInt8,
and the same `--keep-float` MatMuls stay FP32. Within onnxruntime on x86 it ran slower than
dynamic INT8 (DESIGN.md), so it is opt-in.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from guardcli.core import registry
from guardcli.core.catalog import ONNX_VARIANT_FILES
from guardcli.core.errors import input_error
from guardcli.core.records import ReadOptions, read_lines
from guardcli.core.tokenize import TextTokenizer
from guardcli.core.variants import GGUF_VARIANT_FILES, GGUF_VARIANTS
from guardcli.runtime.onnx_recipes import (
    INT8_KEEP_FLOAT_DEFAULT,
    PROTOBUF_LIMIT,
    _onnx,
    int8_excluded_nodes,
    model_size,
    to_fp16,
    to_int8_dynamic,
    unlinked_graph,
)

ONNX_TARGETS = ("fp16", "int8")
TARGETS = (*ONNX_TARGETS, *reversed(GGUF_VARIANTS))


@dataclass
class QuantizeResult:
    variant: str
    recipe: str  # fp16 | int8-dynamic | int8-static | gguf-f16 | gguf-q8_0
    path: Path
    bytes: int
    seconds: float
    kept_float: list[str] = field(default_factory=list)  # MatMul nodes kept FP32 (INT8)
    calibration_texts: int = 0


def parse_targets(text: str | Iterable[str]) -> list[str]:
    items = text.split(",") if isinstance(text, str) else list(text)
    targets = [t.strip().lower() for t in items if t.strip()]
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise input_error(
            f"Unknown --to target {', '.join(bad) or '(none)'}.",
            f"Choose from: {', '.join(TARGETS)} (comma separated).",
        )
    return list(dict.fromkeys(targets))


def calibration_texts(path: Path, read: ReadOptions | None = None) -> list[str]:
    """Texts of a calibration file: JSONL records (text, else prompt) or plain lines."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise input_error(f"Cannot read {path}: {exc.strerror}.") from None
    with handle:
        texts = [r.text for r in read_lines(handle, read or ReadOptions()) if r.text]
    if not texts:
        raise input_error(f"{path} holds no text to calibrate on.")
    return texts


class TokenizedReader:
    """onnxruntime's CalibrationDataReader protocol over tokenized texts, one text per batch
    (no padding, so calibration sees only real tokens)."""

    def __init__(self, model_dir: Path, texts: list[str], max_length: int):
        import numpy as np

        tok = TextTokenizer(model_dir, max_length)
        self._feeds = [
            {
                "input_ids": np.asarray([e.ids], dtype=np.int64),
                "attention_mask": np.ones((1, len(e.ids)), dtype=np.int64),
            }
            for e in tok.encode(texts)
        ]
        self._it: Iterator[dict] = iter(self._feeds)

    def get_next(self) -> dict | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._feeds)


def to_int8_static(
    src: Path,
    dst: Path,
    reader: TokenizedReader,
    *,
    keep_float: Iterable[str] = INT8_KEEP_FLOAT_DEFAULT,
) -> list[str]:
    """Calibrated static INT8 (QDQ) of every MatMul but the kept ones. Returns the kept nodes."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def get_next(self):
            return reader.get_next()

        def rewind(self):
            reader.rewind()

    excluded = int8_excluded_nodes(src, keep_float)
    dst.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        str(src),
        str(dst),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul"],
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax,
        use_external_data_format=model_size(src) > PROTOBUF_LIMIT,
    )
    return excluded


def _max_length(model_dir: Path) -> int:
    """The max_length `guard export` recorded in config.json, else the default family's
    (seqcls: CSAM-Guard's 384)."""
    config = model_dir / "config.json"
    if config.exists():
        ours = json.loads(config.read_text(encoding="utf-8")).get("guardcli")
        value = ours.get("max_length") if isinstance(ours, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return registry.fallback().max_length


def is_causal_folder(model_dir: Path) -> bool:
    """A generative guard's folder (its graph carries a KV cache; see export_causal)."""
    from guardcli.core.resolve import is_generative_folder

    return is_generative_folder(Path(model_dir))


def _takes_cache(graph: Path) -> bool:
    """Whether the graph's inputs include a KV cache (a causal LM's or a stream's)."""
    onnx = _onnx()
    inputs = onnx.load(str(graph), load_external_data=False).graph.input
    return any(i.name.startswith("past_key_values.") for i in inputs)


def quantize_gguf(model_dir: Path, variants: list[str], log) -> list[QuantizeResult]:
    """GGUF files (llama.cpp's format: runtime.gguf_export) of a generative guard's checkpoint,
    at DIR/gguf-f16/model.gguf and DIR/gguf-q8_0/model.gguf."""
    from guardcli.runtime.gguf_export import GGUF_TYPES, write_gguf

    if not is_causal_folder(model_dir):
        raise input_error(
            f"{model_dir} is not a generative guard's folder: GGUF variants run "
            "qwen3guard-gen and llama-guard checkpoints on llama.cpp.",
            "Drop the gguf-* targets from --to.",
        )
    results = []
    for variant in variants:
        start = time.perf_counter()
        dst = model_dir / GGUF_VARIANT_FILES[variant]
        log(f"writing {variant} (llama.cpp GGUF) from the checkpoint")
        write_gguf(model_dir, dst, GGUF_TYPES[variant], log=log)
        results.append(
            QuantizeResult(variant, variant, dst, dst.stat().st_size, time.perf_counter() - start)
        )
    return results


def quantize_model(
    model_dir: Path,
    targets: Iterable[str] = TARGETS,
    *,
    keep_float: Iterable[str] | None = None,
    static: bool = False,
    calibration: Path | None = None,
    max_length: int | None = None,
    log=lambda _: None,
) -> list[QuantizeResult]:
    """Write onnx/model_fp16.onnx and/or onnx/model_quantized.onnx next to onnx/model.onnx;
    gguf-f16/gguf-q8_0 targets write llama.cpp's GGUF from the checkpoint (quantize_gguf).

    The same recipes apply to a causal LM's KV-cache graph (qwen3guard-gen): its inputs and
    outputs, the KV cache included, stay FP32, so the runtime feeds every variant alike."""
    model_dir = Path(model_dir).expanduser()
    targets = parse_targets(list(targets))
    ggufs = [t for t in targets if t in GGUF_VARIANTS]
    targets = [t for t in targets if t not in GGUF_VARIANTS]
    results = quantize_gguf(model_dir, ggufs, log) if ggufs else []
    if not targets:
        return results
    src = model_dir / ONNX_VARIANT_FILES["fp32"]
    if not src.exists():
        raise input_error(
            f"{model_dir} has no {ONNX_VARIANT_FILES['fp32']} to quantize.",
            "Make one from a transformers checkpoint with `guard export SRC --out DIR`.",
        )
    if static and "int8" not in targets:
        raise input_error("--static makes an INT8 variant: add int8 to --to.")
    if static and calibration is None:
        raise input_error(
            "--static needs --calibration FILE.",
            "Give representative prompts, one per line or as JSONL with a 'text' field.",
        )
    if calibration is not None and not static:
        raise input_error("--calibration is only used with --static.")
    if static and is_causal_folder(model_dir):
        raise input_error(
            f"{model_dir} holds a causal LM with KV cache: --static calibrates classifier "
            "inputs only.",
            "Use dynamic INT8 (drop --static) for a generative guard.",
        )
    _onnx()  # "install guardcli[export]" before any work when onnx is missing
    family = registry.folder_family(model_dir)
    if static and _takes_cache(src):
        raise input_error(
            f"{src} takes a KV cache (past_key_values.*): --static calibrates classifier "
            "inputs only.",
            "Use dynamic INT8 (drop --static).",
        )
    # None: the family's default (the card's: down_proj); '' patterns are dropped, so
    # `--keep-float ''` quantizes all.
    if keep_float is None:
        keep_float = (
            INT8_KEEP_FLOAT_DEFAULT if family.int8_keep_float is None else family.int8_keep_float
        )
    patterns = [p for p in keep_float if p]
    fp16 = registry.load(family.fp16) if family.fp16 else to_fp16
    with unlinked_graph(src) as graph:
        for target in targets:
            dst = model_dir / ONNX_VARIANT_FILES[target]
            start = time.perf_counter()
            kept: list[str] = []
            count = 0
            if target == "fp16":
                log("converting FP16 (norms kept FP32)")
                fp16(graph, dst)
                recipe = "fp16"
            elif static:
                assert calibration is not None
                texts = calibration_texts(calibration)
                count = len(texts)
                log(f"calibrating static INT8 (QDQ) on {count} texts")
                reader = TokenizedReader(model_dir, texts, max_length or _max_length(model_dir))
                kept = to_int8_static(graph, dst, reader, keep_float=patterns)
                recipe = "int8-static"
            else:
                kept_note = ", ".join(patterns) or "none"
                log(f"quantizing INT8, activations per row (kept FP32: {kept_note})")
                kept = to_int8_dynamic(graph, dst, keep_float=patterns)
                recipe = "int8-dynamic"
            if target == "int8" and not kept and patterns:
                log(f"note: no MatMul matched {', '.join(patterns)}; every MatMul is INT8")
            results.append(
                QuantizeResult(
                    variant=target,
                    recipe=recipe,
                    path=dst,
                    bytes=model_size(dst),
                    seconds=time.perf_counter() - start,
                    kept_float=kept,
                    calibration_texts=count,
                )
            )
    return results
