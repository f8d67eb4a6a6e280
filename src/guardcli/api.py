"""The library entry point: `load_guard(name_or_dir, ...)`."""

from __future__ import annotations

from pathlib import Path

from .families import Guard, get_family
from .hub import resolve
from .thresholds import read_thresholds


def load_guard(
    name_or_dir: str | Path = "csam-guard",
    *,
    variant: str = "auto",
    backend: str | None = None,
    threshold: float | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    fail_closed: bool = False,
    cache_dir: str | None = None,
    thresholds: str | Path | dict[str, float] | None = None,
) -> Guard:
    """Resolve a catalog name (from the local cache, offline) or a model folder to a Guard.

    >>> guard = load_guard("./models/csam-guard-tiny", variant="fp32")
    >>> guard.classify(["a watercolor of a lighthouse"])[0].flagged

    `backend` (onnxruntime|openvino) runs the variant on that runtime; None: the variant's own
    (bf16 and ov-int8 are OpenVINO's, fp32/fp16/int8 onnxruntime's).
    `thresholds` (a {category: threshold} dict, or a JSON file of one, flat or under a
    "thresholds" key) overrides per-category thresholds of a multilabel model.
    """
    if isinstance(thresholds, str | Path):
        thresholds = read_thresholds(thresholds)
    model = resolve(name_or_dir, variant, cache_dir=cache_dir, backend=backend)
    cls = get_family(model.family)
    return cls(
        model,
        threshold=threshold,
        max_length=max_length,
        batch_size=batch_size,
        threads=threads,
        fail_closed=fail_closed,
        category_thresholds=thresholds,
    )
