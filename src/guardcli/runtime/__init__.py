"""Backends that run a prepared batch: `open_session(model)` picks onnxruntime or OpenVINO."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from guardcli.core.resolve import ResolvedModel


class Session(Protocol):
    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


def open_session(
    model: ResolvedModel, *, threads: int | None = None, one_shot: bool = False
) -> Session:
    """A session for the model's variant on its backend. `one_shot`: a short run (a few
    prompts), which skips load-time work that pays off only over many batches."""
    if getattr(model, "backend", "onnxruntime") == "openvino":
        from guardcli.core.variants import OPENVINO_PRECISION
        from guardcli.runtime.openvino_session import OpenVinoSession

        return OpenVinoSession(
            model.graph, threads=threads, precision=OPENVINO_PRECISION.get(model.variant)
        )
    from guardcli.runtime.onnx_session import OnnxSession

    return OnnxSession(model.graph, threads=threads, prepack=not one_shot)
