"""`guard stream`: moderate an answer token by token as it streams in (a streaming family:
Qwen3Guard-Stream)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from typing import IO, Annotated, Any

import typer

from guardcli.cli._options import CountOption, ThreadsOpt, VerboseOpt
from guardcli.cli._output import fail, handle_errors, stderr
from guardcli.core.errors import ExitCode
from guardcli.core.strict_json import dumps

EPILOG = (
    "Exit codes: 0 the answer ended unflagged, 1 the prompt or the answer was flagged (output "
    "stops there and stdout is closed, so a pipeline can cut generation), 2 usage or input "
    "error, 3 model or runtime error.\n\n"
    "Examples:\n\n"
    "  llm 'tell me a story' | guard stream -m ./qs --prompt 'tell me a story'\n\n"
    "  (echo 'the prompt'; cat answer.txt) | guard stream -m ./qs --per-token\n\n"
    "  guard stream -m ./qs --prompt hi --hold-back 2 --chunk-tokens 1 --strict < answer.txt\n\n"
    "  guard stream -m llama-prompt-guard-2-86m --window 400 --overlap 200 -p hi < answer.txt  "
    "(windowed re-check)"
)
READ_SIZE = 65536


def _chunks(stream: IO[bytes], first: bytes = b"") -> Iterator[bytes]:
    """Bytes as they arrive: read1 returns what one read of the pipe gives, without waiting
    for a full buffer."""
    if first:
        yield first
    read = getattr(stream, "read1", stream.read)
    while True:
        data = read(READ_SIZE)
        if not data:
            return
        yield data


def _first_line(stream: IO[bytes]) -> tuple[str, bytes]:
    """The prompt (the first line) and whatever of the answer came with it."""
    read = getattr(stream, "read1", stream.read)
    buf = b""
    while b"\n" not in buf:
        data = read(READ_SIZE)
        if not data:
            break
        buf += data
    line, _, rest = buf.partition(b"\n")
    return line.rstrip(b"\r").decode("utf-8", errors="replace"), rest


@handle_errors
def stream(
    *,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="A Qwen3Guard-Stream folder, or qwen3guard-stream[-4b|-8b] from the local cache. "
            "Default: qwen3guard-stream.",
        ),
    ] = None,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", "-p", help="The user's prompt. Default: the first stdin line."),
    ] = None,
    variant: Annotated[
        str,
        typer.Option(
            "--variant",
            help="auto|fp32|fp16|int8|torch. auto: int8, else fp32, else fp16 ONNX, else the torch "
            "reference.",
        ),
    ] = "auto",
    chunk_tokens: Annotated[
        int | None,
        CountOption(
            "--chunk-tokens",
            help="Answer tokens judged per model call (verdicts wait for k final tokens; the "
            "end of the text flushes). Default: 8. Streaming families only.",
        ),
    ] = None,
    window: Annotated[
        int | None,
        typer.Option(
            "--window",
            help="Windowed re-check (families without token heads): new answer characters "
            "judged per check. Default: 400.",
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            "--overlap",
            help="Windowed re-check: already-judged characters each window repeats before its "
            "new text, so content split at a window's edge is judged whole. Default: 200.",
        ),
    ] = None,
    hold_back: Annotated[
        int,
        typer.Option(
            "--hold-back",
            min=0,
            help="Chunk events release answer text only once judged and N more tokens have "
            "been judged (N >= 1 never releases a flagged pair; --per-token events carry each "
            "token as it is judged). Default: 0.",
        ),
    ] = 0,
    per_token: Annotated[
        bool,
        typer.Option(
            "--per-token", help="One event per token (the prompt's, then each answer token's)."
        ),
    ] = False,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Flag Controversial too (two consecutive tokens)."),
    ] = False,
    threads: ThreadsOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Judge an answer as it streams: read it from stdin as it arrives, re-tokenize it
    incrementally and judge each final token with Qwen3Guard-Stream's response heads, keeping
    the KV cache between chunks (a flat cost per token). The prompt is judged first, by the
    query heads at its <|im_end|>.

    Writes JSONL to stdout: a prompt event, one chunk event per judged chunk (offsets, the new
    text, risk level, category, probabilities, the first unsafe offset) or one event per token
    with --per-token, and a summary. An answer is flagged at the first two consecutive Unsafe
    tokens (Controversial too with --strict), as the authors' evaluation decides; guard then
    stops reading, closes stdout and exits 1.

    A model of any other family (a classifier without token heads) streams as a windowed
    re-check, said on stderr and in every event ("mode": "window"): every --window new
    characters are judged with --overlap characters before them; text is released once a
    window covering it is judged, and the first flagged window stops the stream (exit 1). A
    window the model cannot judge stops it too (fail closed, exit 2 or 3).
    """
    from guardcli.jobs.stream import open_stream
    from guardcli.jobs.stream_window import WindowedStream

    if prompt is None and sys.stdin.isatty():
        raise fail(
            "No prompt.", "Pass --prompt TEXT, or pipe the prompt as the first line of stdin."
        )
    # Checks --variant first (before a folder is looked for), then resolves and loads.
    opened = open_stream(
        model,
        variant,
        chunk_tokens=chunk_tokens,
        strict=strict,
        threads=threads,
        window=window,
        overlap=overlap,
    )
    if isinstance(opened, WindowedStream):
        stderr().print(
            f"guard stream: {opened.name} has no token-level heads: a windowed re-check "
            f"({opened.window} new characters per window, {opened.overlap} of overlap), "
            "not per-token verdicts.",
            markup=False,
        )
    source = sys.stdin.buffer
    first = b""
    if prompt is None:
        prompt, first = _first_line(source)

    def emit(event: dict[str, Any]) -> None:
        if event["event"] == "summary":
            event.update(model=opened.name, variant=opened.variant)
            if not isinstance(opened, WindowedStream):
                event["chunk_tokens"] = chunk_tokens or 8
        sys.stdout.write(dumps(event) + "\n")
        sys.stdout.flush()

    summary = opened.run(
        prompt, _chunks(source, first), emit, per_token=per_token, hold_back=hold_back
    )
    if summary.get("error") or summary["flagged"]:
        _close_stdout()
        raise typer.Exit(summary.get("exit_code", int(ExitCode.FLAGGED)))


def _close_stdout() -> None:
    """Close the file descriptor, so the reader of our stdout sees the end now (a pipeline
    cuts generation there); later writes go nowhere."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, io.UnsupportedOperation):
        return  # not a real file (tests capture stdout in memory)
    os.close(fd)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
