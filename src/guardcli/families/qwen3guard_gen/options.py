"""The qwen3guard-gen family's own options, typed (GuardSpec(options=Qwen3GuardOptions(...)))."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Qwen3GuardOptions:
    """strict: refuse output outside the exact grammar (else read it loosely); score: the
    score-mode probability; generate: greedy generation's verdict; served_model, api_key,
    concurrency: the remote endpoint's (GuardSpec.endpoint); max_new_tokens: generation's cap.
    Checked by the family when the guard loads."""

    strict: bool = True
    score: bool = True
    generate: bool = True
    served_model: str | None = None
    api_key: str | None = None
    concurrency: int | None = None
    max_new_tokens: int = 128
    policy: str | None = None  # a --policy file (core.policy): the category list and names
