"""OpenVINO sessions on the CPU: the same ONNX file (or an NNCF INT8 IR), the same `run` call.

OpenVINO compiles a graph for this CPU; with a cache folder it stores the compiled blob and the
next process loads that instead of compiling again, which is most of its cold start.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from guardcli.core.cpu import usable_cpus
from guardcli.core.errors import GuardError, missing_extra
from guardcli.core.paths import cache_dir
from guardcli.core.timings import record


def import_openvino():
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    try:
        start = time.perf_counter()
        import openvino

        record("import openvino", time.perf_counter() - start)
        return openvino
    except ImportError as exc:
        raise missing_extra("openvino", "OpenVINO variants (bf16, ov-fp32, ov-int8)") from exc


def compile_cache_dir(precision: str | None) -> Path | None:
    """guardcli's cache folder for OpenVINO's compiled blobs; None when it cannot be written.

    One folder per precision hint: OpenVINO 2026.4 keys its blobs without the hint, so an f32
    blob in a shared folder is handed to a bf16 compile of the same file and gives wrong logits
    (seen on the tiny model; tests/test_openvino.py checks the separation)."""

    folder = cache_dir() / "openvino" / (precision or "default")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder


# A port may carry several tensor names (OpenVINO merges a no-op Cast into its input); the
# name guard feeds by is the graph's own one.
PORT_NAMES = ("input_ids", "attention_mask", "position_ids", "token_type_ids", "logits")


def port_name(port: Any) -> str:
    """The name guard knows a model input or output by, whichever of its names OpenVINO lists
    first."""
    names = port.get_names()
    return next((n for n in PORT_NAMES if n in names), port.get_any_name())


class OpenVinoSession:
    """One model compiled by OpenVINO for the CPU, fed like `OnnxSession`."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int | None = None,
        precision: str | None = None,
        cache: bool = True,
    ):
        ov = import_openvino()
        start = time.perf_counter()
        config: dict[str, object] = {
            "INFERENCE_NUM_THREADS": threads or usable_cpus(),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        from guardcli.runtime.onnx_session import cache_enabled

        folder = compile_cache_dir(precision) if cache and cache_enabled() else None
        if folder is not None:
            config["CACHE_DIR"] = str(folder)
        try:
            core = ov.Core()
            self.compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:
            raise GuardError(
                f"OpenVINO could not load {path}: {exc}",
                hint="The file may be incomplete: fetch or quantize the variant again, or pick "
                "another one.",
            ) from exc
        record("session load", time.perf_counter() - start)
        self.path = Path(path)
        self.precision = precision
        self.input_names = [port_name(i) for i in self.compiled.inputs]
        outputs = [port_name(o) for o in self.compiled.outputs]
        self.output = self.compiled.outputs[outputs.index("logits") if "logits" in outputs else 0]
        self.request = self.compiled.create_infer_request()

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        from guardcli.runtime.onnx_session import feed_for

        feed = feed_for(self.input_names, input_ids, attention_mask, self.path)
        try:
            result = self.request.infer(feed)
        except Exception as exc:
            raise GuardError(f"OpenVINO failed on {self.path.name}: {exc}") from exc
        return np.array(result[self.output], dtype=np.float32)
