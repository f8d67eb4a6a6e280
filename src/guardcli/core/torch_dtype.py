"""Which float type a torch path computes in: a choice the user can see, not a surprise.

`auto` is bfloat16 only where the CPU does bf16 arithmetic natively (AMX, avx512_bf16, Arm
bf16); elsewhere torch emulates it, slower than float32 and less precise, so auto is float32.
"""

from __future__ import annotations

from collections.abc import Iterable

from guardcli.core.errors import input_error
from guardcli.core.variants import NATIVE_BF16_FLAGS

DTYPES = ("auto", "float32", "bfloat16")
# How a verdict's `variant` names the precision a torch path ran in ("lora-bf16").
SHORT = {"float32": "fp32", "bfloat16": "bf16"}


def native_bf16(flags: Iterable[str] | None = None) -> bool:
    if flags is None:
        from guardcli.core.cpu import read_cpu

        flags = read_cpu().flags
    return bool(set(flags) & NATIVE_BF16_FLAGS)


def resolve_dtype(choice: str | None, flags: Iterable[str] | None = None) -> str:
    """float32 | bfloat16 for --dtype (None or auto: from this CPU's flags, or `flags`)."""
    choice = "auto" if choice is None else choice
    if choice not in DTYPES:
        raise input_error(
            f"Unknown --dtype {choice!r}.",
            f"Choose one of: {', '.join(DTYPES)} (auto: bfloat16 on CPUs with native bf16, "
            "else float32).",
        )
    if choice == "auto":
        return "bfloat16" if native_bf16(flags) else "float32"
    return choice
