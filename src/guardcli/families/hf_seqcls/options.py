"""The hf-seqcls family's own options, typed (GuardSpec(options=HfSeqClsOptions(...)))."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class HfSeqClsOptions:
    """long: truncate|segments (None: truncate); unsafe_labels: the labels that mean unsafe
    (names or indices; None: the entry's or the config's); overlap: tokens shared by adjacent
    segments (None: the default). Checked by the family when the guard loads."""

    long: str | None = None
    unsafe_labels: str | Sequence[str] | None = None
    overlap: int | None = None
