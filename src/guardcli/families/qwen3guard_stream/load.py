"""Open a Qwen3Guard-Stream folder (or catalog name, offline) as a StreamJudge: what
`guard stream` runs, through the family's `stream` hook (`open_stream`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.resolve import ResolvedModel
from guardcli.families.qwen3guard_stream.labels import label_maps
from guardcli.families.qwen3guard_stream.resolve import NAME, check_variant, resolve_folder
from guardcli.families.qwen3guard_stream.stream import StreamJudge


def resolve_stream_model(
    name_or_dir: str, variant: str = "auto", *, cache_dir: str | None = None
) -> ResolvedModel:
    """A folder, or a catalog name found in the local cache; `auto` picks INT8, then FP32
    ONNX, then the torch reference on the checkpoint."""
    check_variant(variant)
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return resolve_folder(path, variant, None)
    if "/" in name_or_dir or name_or_dir.startswith((".", "~")):
        raise GuardError(
            f"Model folder {name_or_dir} does not exist.",
            hint="Pass a Qwen3Guard-Stream folder (`guard synth qwen3guard-stream --out "
            "DIR` builds one), or a catalog name such as qwen3guard-stream.",
            code=ExitCode.MODEL,
        )
    from guardcli.core.cache import cached_snapshot
    from guardcli.core.catalog import get_entry

    entry = get_entry(name_or_dir)
    if entry.family != NAME:
        raise GuardError(
            f"Model {name_or_dir!r} is a {entry.family} model; `guard stream` runs "
            "Qwen3Guard-Stream models.",
            hint="Pass --model qwen3guard-stream (or -4b, -8b), or a model folder.",
            code=ExitCode.INPUT,
        )
    snapshot = cached_snapshot(entry.repo, cache_dir=cache_dir)
    if snapshot is None:
        raise GuardError(
            f"Model {name_or_dir!r} ({entry.repo}) is not in the local cache.",
            hint=f"Run `guard fetch {name_or_dir}`, or pass --model DIR.",
            code=ExitCode.MODEL,
        )
    return resolve_folder(snapshot, variant, entry)


def open_judge(
    model: ResolvedModel,
    *,
    chunk_tokens: int = 8,
    strict: bool = False,
    threads: int | None = None,
) -> StreamJudge:
    from tokenizers import Tokenizer

    from guardcli.families.qwen3guard_stream.runners import OnnxRunner, StreamRunner, TorchRunner

    config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    runner: StreamRunner
    if model.variant == "torch":
        runner = TorchRunner(model.path, threads=threads)
    else:
        runner = OnnxRunner(model.graph, threads=threads)
    try:
        tokenizer = Tokenizer.from_file(str(model.path / "tokenizer.json"))
    except Exception as exc:
        raise GuardError(f"Cannot load {model.path / 'tokenizer.json'}: {exc}") from exc
    return StreamJudge(
        runner, tokenizer, label_maps(config), chunk_tokens=chunk_tokens, strict=strict
    )


@dataclass
class OpenStream:
    """A loaded stream guard: `run` judges one prompt and its answer as the answer arrives."""

    model: ResolvedModel
    judge: StreamJudge

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def variant(self) -> str:
        return self.model.variant

    def run(
        self,
        prompt: str,
        chunks: Iterable[bytes],
        emit: Callable[[dict[str, Any]], None],
        *,
        per_token: bool = False,
        hold_back: int = 0,
    ) -> dict[str, Any]:
        from guardcli.families.qwen3guard_stream.session import run_stream

        return run_stream(
            self.judge, prompt, chunks, emit, per_token=per_token, hold_back=hold_back
        )


def open_stream(
    name_or_dir: str,
    variant: str = "auto",
    *,
    chunk_tokens: int = 8,
    strict: bool = False,
    threads: int | None = None,
    cache_dir: str | None = None,
) -> OpenStream:
    """The family's `stream` hook: resolve, load, and return something `guard stream` runs."""
    model = resolve_stream_model(name_or_dir, variant, cache_dir=cache_dir)
    judge = open_judge(model, chunk_tokens=chunk_tokens, strict=strict, threads=threads)
    return OpenStream(model, judge)
