"""One Variant vocabulary (core.variants.KNOWN_VARIANTS): every variant name with its file,
runtime and precision, agreeing with the constants the resolvers and the bench use."""

from __future__ import annotations

import pytest

from guardcli.core import variants
from guardcli.core.catalog import ONNX_VARIANT_FILES, VARIANTS
from guardcli.jobs.bench.plan import BENCH_VARIANTS, TORCH_PATHS, runtime_of


def test_every_variant_guardcli_runs_is_in_the_vocabulary() -> None:
    assert set(variants.KNOWN_VARIANTS) == set(BENCH_VARIANTS)
    assert set(variants.ALL_VARIANTS) <= set(variants.KNOWN_VARIANTS)
    for name, v in variants.KNOWN_VARIANTS.items():
        assert v.name == name
        assert v.runtime in variants.RUNTIMES
        assert v.precision in (None, "fp32", "fp16", "bf16", "int8")


def test_files_and_runtimes_agree_with_the_constants() -> None:
    for name in VARIANTS:  # onnxruntime's graphs
        v = variants.KNOWN_VARIANTS[name]
        assert (v.file, v.runtime, v.precision) == (ONNX_VARIANT_FILES[name], "onnxruntime", name)
    for name, file in variants.OPENVINO_VARIANT_FILES.items():
        v = variants.KNOWN_VARIANTS[name]
        assert (
            (v.file, v.runtime) == (file, "openvino") == (variants.variant_file(name), "openvino")
        )
        assert variants.backend_of(name) == "openvino"
        hint = variants.OPENVINO_PRECISION[name]
        assert hint is None or v.precision == {"f32": "fp32", "bf16": "bf16"}[hint]
    for name in TORCH_PATHS:  # checkpoints: no graph file, dtype chosen at load
        assert variants.KNOWN_VARIANTS[name].file is None
        assert runtime_of(name) == "torch"
        with pytest.raises(KeyError):
            variants.variant_file(name)
    assert variants.variant_info("fp64") is None
    assert runtime_of("fp64") == "onnxruntime"  # as the bench named an unknown path before
