"""Open a Qwen3Guard-Stream folder (or catalog name, offline) as a StreamJudge."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import ExitCode, GuardError
from .export import FP32_GRAPH, INT8_GRAPH
from .labels import label_maps
from .reference import read_config
from .stream import StreamJudge

STREAM_VARIANTS = ("auto", "fp32", "int8", "torch")
FAMILY = "qwen3guard-stream"


@dataclass(frozen=True)
class StreamModel:
    name: str
    path: Path
    variant: str  # fp32 | int8 (onnxruntime) | torch


def check_variant(variant: str) -> None:
    if variant not in STREAM_VARIANTS:
        raise GuardError(
            f"Unknown --variant {variant!r} for a stream.",
            hint=f"Choose one of: {', '.join(STREAM_VARIANTS)}.",
            code=ExitCode.INPUT,
        )


def resolve_stream_model(
    name_or_dir: str, variant: str = "auto", *, cache_dir: str | None = None
) -> StreamModel:
    """A folder, or a catalog name found in the local cache; `auto` picks INT8, then FP32
    ONNX, then the torch reference on the checkpoint."""
    check_variant(variant)
    path = Path(name_or_dir).expanduser()
    if not path.is_dir():
        if "/" in name_or_dir or name_or_dir.startswith((".", "~")):
            raise GuardError(
                f"Model folder {name_or_dir} does not exist.",
                hint="Pass a Qwen3Guard-Stream folder (`guard synth qwen3guard-stream --out "
                "DIR` builds one), or a catalog name such as qwen3guard-stream.",
                code=ExitCode.MODEL,
            )
        from ...catalog import get_entry
        from ...hub import cached_snapshot

        entry = get_entry(name_or_dir)
        if entry.family != FAMILY:
            raise GuardError(
                f"Model {name_or_dir!r} is a {entry.family} model; `guard stream` runs "
                "Qwen3Guard-Stream models.",
                hint="Pass --model qwen3guard-stream (or -4b, -8b), or a model folder.",
                code=ExitCode.INPUT,
            )
        repo = entry.repo
        snapshot = cached_snapshot(repo, cache_dir=cache_dir)
        if snapshot is None:
            raise GuardError(
                f"Model {name_or_dir!r} ({repo}) is not in the local cache.",
                hint=f"Run `guard fetch {name_or_dir}`, or pass --model DIR.",
                code=ExitCode.MODEL,
            )
        path = snapshot
    read_config(path)
    graphs = {"int8": path / INT8_GRAPH, "fp32": path / FP32_GRAPH}
    if variant == "auto":
        variant = next((v for v, g in graphs.items() if g.is_file()), "torch")
    if variant in graphs and not graphs[variant].is_file():
        raise GuardError(
            f"{path} has no {variant} graph ({graphs[variant].relative_to(path)}).",
            hint="Pick another --variant (torch runs the checkpoint).",
            code=ExitCode.MODEL,
        )
    return StreamModel(name_or_dir if not Path(name_or_dir).is_dir() else path.name, path, variant)


def open_judge(
    model: StreamModel,
    *,
    chunk_tokens: int = 8,
    strict: bool = False,
    threads: int | None = None,
) -> StreamJudge:
    import json

    from tokenizers import Tokenizer

    from .runners import OnnxRunner, StreamRunner, TorchRunner

    config = json.loads((model.path / "config.json").read_text(encoding="utf-8"))
    runner: StreamRunner
    if model.variant == "torch":
        runner = TorchRunner(model.path, threads=threads)
    else:
        graph = model.path / (INT8_GRAPH if model.variant == "int8" else FP32_GRAPH)
        runner = OnnxRunner(graph, threads=threads)
    try:
        tokenizer = Tokenizer.from_file(str(model.path / "tokenizer.json"))
    except Exception as exc:
        raise GuardError(f"Cannot load {model.path / 'tokenizer.json'}: {exc}") from exc
    return StreamJudge(
        runner, tokenizer, label_maps(config), chunk_tokens=chunk_tokens, strict=strict
    )
