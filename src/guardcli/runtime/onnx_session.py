"""onnxruntime sessions: threads from the usable cores, inputs read from the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cpu import usable_cpus
from ..errors import GuardError


class OnnxSession:
    """One ONNX model on the CPU execution provider."""

    def __init__(self, path: Path, *, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or usable_cpus()
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise GuardError(
                f"onnxruntime could not load {path}: {exc}",
                hint="The file may be incomplete: fetch the variant again, or pick another one.",
            ) from exc
        self.path = Path(path)
        self.input_names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feed: dict[str, np.ndarray] = {}
        for name in self.input_names:
            if name == "input_ids":
                feed[name] = input_ids
            elif name == "attention_mask":
                feed[name] = attention_mask
            elif name == "position_ids":
                feed[name] = np.clip(np.cumsum(attention_mask, axis=1) - 1, 0, None)
            elif name == "token_type_ids":
                feed[name] = np.zeros_like(input_ids)
            else:
                raise GuardError(
                    f"{self.path.name} expects an input {name!r} guardcli cannot feed."
                )
        try:
            return self.session.run([self.output_name], feed)[0]
        except Exception as exc:
            raise GuardError(f"onnxruntime failed on {self.path.name}: {exc}") from exc
