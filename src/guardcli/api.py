"""The library entry point: `load_guard(name_or_dir, ...)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .families import Guard, get_family
from .hub import remote_model, resolve


def load_guard(
    name_or_dir: str | Path = "csam-guard",
    *,
    variant: str = "auto",
    threshold: float | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    fail_closed: bool = False,
    cache_dir: str | None = None,
    endpoint: str | None = None,
    **options: Any,
) -> Guard:
    """Resolve a catalog name (from the local cache, offline) or a model folder to a Guard.

    >>> guard = load_guard("./models/csam-guard-tiny", variant="fp32")
    >>> guard.classify(["a watercolor of a lighthouse"])[0].flagged

    Family options pass through `options` (qwen3guard-gen: strict, score, generate, backend,
    served_model, api_key, concurrency). With `endpoint`, a generative guard runs on an
    OpenAI-compatible server and needs no local files.
    """
    if endpoint:
        model = remote_model(name_or_dir, cache_dir=cache_dir)
        options["endpoint"] = endpoint
    else:
        model = resolve(name_or_dir, variant, cache_dir=cache_dir)
    cls = get_family(model.family)
    return cls(
        model,
        threshold=threshold,
        max_length=max_length,
        batch_size=batch_size,
        threads=threads,
        fail_closed=fail_closed,
        **options,
    )
