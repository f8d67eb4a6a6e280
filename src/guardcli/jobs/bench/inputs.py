"""What `guard bench` times with and records: prompts (synthetic or read), the machine."""

from __future__ import annotations

import contextlib
import platform
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guardcli import __version__
from guardcli.core import cpu
from guardcli.core.cpu import cpu_flags, usable_cpus
from guardcli.core.errors import input_error
from guardcli.runtime.onnx_recipes import model_size

# ---------------------------------------------------------------- prompts

# Common words that the Qwen3 tokenizer keeps as one token each (with their leading space), so a
# prompt grows one token per word and lands on the requested length.
_WORDS = (
    "the of and to in is for on that with as it at by from this be are was or an have not "
    "you all can more one new time but will about if has they which their so up out some what "
    "other when there into only also any after over first two may these like how most such "
    "then many see way back made them well good three people year day where must work through "
    "water light city house night world river boat garden winter paper music color market"
).split()


def synthetic_prompts(tokenizer, seq_len: int, count: int, seed: int = 0) -> list[str]:
    """`count` distinct prompts that each tokenize to `seq_len` tokens (special tokens included)
    where the words allow it, else as close as they come below."""
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        words: list[str] = []
        text = ""
        for _ in range(seq_len * 2 + 8):
            candidate = " ".join([*words, rng.choice(_WORDS)])
            if len(tokenizer.encode([candidate])[0].ids) > seq_len:
                break
            words.append(candidate.rsplit(" ", 1)[-1])
            text = candidate
        prompts.append(text or rng.choice(_WORDS))
    return prompts


def read_prompts(path: Path, limit: int = 10_000) -> list[str]:
    """Texts from JSONL (the `text` or `prompt` field) or plain lines; blank lines skipped."""
    from guardcli.core.records import ReadOptions, read_lines

    if str(path) == "-":  # stdin, as every command reads it; left open for the caller
        source: Any = contextlib.nullcontext(sys.stdin.buffer)
    else:
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise input_error(f"Cannot read {path}: {exc.strerror}.") from None
    with source as handle:
        texts = [r.text for r in read_lines(handle, ReadOptions()) if r.text]
    if not texts:
        raise input_error(
            f"{path} has no prompts.", hint="One prompt per line, or JSONL with text."
        )
    return texts[:limit]


# ---------------------------------------------------------------- machine and model


def machine_info(threads: int | None = None) -> dict[str, Any]:

    arch, flags = cpu_flags()
    known = tuple(getattr(cpu, "X86_FEATURES", ())) + tuple(getattr(cpu, "ARM_FEATURES", ()))
    model = platform.processor() or arch
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    from importlib.metadata import PackageNotFoundError, version

    try:
        ov_version: str | None = version("openvino")
    except PackageNotFoundError:
        ov_version = None
    usable = usable_cpus()
    return {
        "cpu_model": model,
        "arch": arch,
        "features": sorted(f for f in flags if f in known),
        "usable_cores": usable,
        "threads": threads or usable,
        "onnxruntime": ort_version,
        "openvino": ov_version,
        "guardcli": __version__,
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def weights_size(files: Sequence[Path]) -> int:
    """Bytes of a variant's weight files on disk, an ONNX graph's external data (or an
    OpenVINO IR's .bin) included."""

    return sum(model_size(f) if f.suffix in (".onnx", ".xml") else f.stat().st_size for f in files)
