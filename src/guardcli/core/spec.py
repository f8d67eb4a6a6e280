"""GuardSpec: the one options object that says which guard to load and how (load_guard takes it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class GuardSpec:
    """Everything that says which guard to load and how: one options object for the CLI, the
    Ray actors, the pipeline stages, serve, sweep and the bench workers (small and picklable,
    unlike a Guard). `options` holds the family's own (qwen3guard-gen: strict, score, generate,
    served_model, api_key, concurrency): a {name: value} mapping, where a family a name does not
    apply to says so (what the CLI passes: it knows the family only once the model resolves),
    or the family's typed options dataclass (Qwen3GuardOptions, HfSeqClsOptions)."""

    model: str = "csam-guard"
    variant: str = "auto"
    threshold: float | None = None
    max_length: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    fail_closed: bool = False
    cache_dir: str | None = None
    backend: str | None = None
    thresholds: str | Path | dict[str, float] | None = None
    dtype: str | None = None  # torch paths (OpenCC): None = auto
    endpoint: str | None = None
    one_shot: bool = False
    options: Mapping[str, Any] | Any = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON-ready data, to cross a process boundary (the bench workers)."""
        data = dataclasses.asdict(self)
        # asdict has turned typed options into their fields (a mapping the family checks).
        data["options"] = dict(data["options"])
        if isinstance(self.thresholds, Path):
            data["thresholds"] = str(self.thresholds)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuardSpec:
        """The spec `to_json` wrote."""
        return cls(**data)
