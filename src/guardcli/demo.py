"""The cached synthetic model that `make demo` and `guard bench --synthetic` run. The demo
itself (which draws on the terminal) is cli/demo.py; `python -m guardcli.demo` still runs it."""

from __future__ import annotations

import sys
from pathlib import Path

from .paths import cache_dir


def synthetic_model(size: str = "tiny", seed: int = 0) -> Path:
    """The cached synthetic CSAM-Guard model, built on first use."""
    from .synthetic import synth_csam_guard

    path = cache_dir() / "synthetic" / f"csam-guard-{size}-seed{seed}"
    if not (path / "guardcli_synthetic.json").exists():
        synth_csam_guard(
            path, size=size, seed=seed, log=lambda m: print(f"synth: {m}", file=sys.stderr)
        )
    return path


if __name__ == "__main__":  # `make demo`; the command itself lives in cli/demo.py
    from .cli.demo import main

    sys.exit(main())
