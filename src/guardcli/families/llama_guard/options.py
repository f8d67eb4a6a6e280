"""The llama-guard family's own options, typed (GuardSpec(options=LlamaGuardOptions(...)))."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlamaGuardOptions:
    """score: score mode's P(unsafe); generate: greedy generation's verdict; policy: a policy
    file (YAML or TOML, see core.policy) whose taxonomy replaces the model's; max_new_tokens:
    generation's cap. Checked by the family when the guard loads."""

    score: bool = True
    generate: bool = True
    policy: str | None = None
    max_new_tokens: int = 32
