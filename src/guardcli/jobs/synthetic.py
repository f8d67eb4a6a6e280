"""The cached synthetic models that `make demo`, `guard bench --synthetic` and the benchmarks run:
built once per (model, size, seed) by its family's synthetic builder, kept in guard's cache."""

from __future__ import annotations

import sys
from pathlib import Path

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.paths import cache_dir
from guardcli.core.registry import load, synth_builders
from guardcli.core.synthetic import SYNTHETIC_MARKER

DEMO_MODEL = "csam-guard"


def synthetic_model(size: str = "tiny", seed: int = 0, *, name: str = DEMO_MODEL) -> Path:
    """The cached synthetic model `name` (a `guard synth` name), built on first use."""
    builders = synth_builders()
    if name not in builders:
        raise GuardError(
            f"No synthetic builder for {name!r} (known: {', '.join(builders)}).",
            hint="Pass one of those names (`guard synth --help` describes each).",
            code=ExitCode.INPUT,
        )
    path = cache_dir() / "synthetic" / f"{name}-{size}-seed{seed}"
    if not (path / SYNTHETIC_MARKER).exists():
        build = load(builders[name][1])
        build(
            path,
            name=name,
            size=size,
            seed=seed,
            log=lambda m: print(f"synth: {m}", file=sys.stderr),
        )
    return path
