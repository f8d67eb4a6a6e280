"""`guard stream`: open a model whose family judges an answer as it arrives (a family with a
`stream` hook in its registry description), found from a folder or a catalog name; a model of
any other family streams as a windowed re-check (jobs.stream_window)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guardcli.core import registry
from guardcli.core.catalog import BUILTIN, get_entry
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.registry import Family


def streaming_families() -> list[Family]:
    return [f for f in registry.families().values() if f.stream is not None]


def default_stream_model() -> str:
    """The first built-in catalog model of a family that streams."""
    streaming = {f.name for f in streaming_families()}
    for entry in BUILTIN.values():
        if entry.family in streaming:
            return entry.name
    raise GuardError("No installed model family can judge a stream.", code=ExitCode.MODEL)


def stream_family(name_or_dir: str) -> Family:
    """The family that will open `name_or_dir`: a folder's, a catalog entry's, or (for a
    folder that is not there) the first streaming family, whose hook says so."""
    streaming = streaming_families()
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        return registry.folder_family(path)
    if "/" in name_or_dir or name_or_dir.startswith((".", "~")):
        if not streaming:
            raise GuardError("No installed model family can judge a stream.", code=ExitCode.MODEL)
        return streaming[0]
    return registry.get(get_entry(name_or_dir).family)


def _not_for(option: str, family: Family, why: str) -> GuardError:
    return GuardError(
        f"{option} does not apply to a {family.name} model: {why}.",
        hint="Drop the option (see `guard stream --help`).",
        code=ExitCode.INPUT,
    )


def open_stream(
    name_or_dir: str | None = None,
    variant: str = "auto",
    *,
    chunk_tokens: int | None = None,
    strict: bool = False,
    threads: int | None = None,
    cache_dir: str | None = None,
    window: int | None = None,
    overlap: int | None = None,
) -> Any:
    """A loaded stream guard: `.name`, `.variant` and `.run(prompt, chunks, emit, *,
    per_token, hold_back) -> summary`: its family's `stream` hook, or for a family without
    one a windowed re-check (`window` new characters per check, `overlap` repeated)."""
    from guardcli.jobs.stream_window import OVERLAP, WINDOW, WindowedStream, check_window

    model = name_or_dir if name_or_dir is not None else default_stream_model()
    family = stream_family(model)
    if family.stream is not None:
        for option, value in (("--window", window), ("--overlap", overlap)):
            if value is not None:
                raise _not_for(option, family, "its token-level heads judge every token")
        return registry.load(family.stream)(
            model,
            variant,
            chunk_tokens=8 if chunk_tokens is None else chunk_tokens,
            strict=strict,
            threads=threads,
            cache_dir=cache_dir,
        )
    if chunk_tokens is not None:
        raise _not_for("--chunk-tokens", family, "it has no token-level heads (use --window)")
    window = WINDOW if window is None else window
    overlap = OVERLAP if overlap is None else overlap
    check_window(window, overlap)
    from guardcli.families.loader import load_guard

    options: dict[str, Any] = {"strict": strict} if family.generative else {}
    guard = load_guard(model, variant=variant, threads=threads, cache_dir=cache_dir, **options)
    return WindowedStream(guard, window, overlap)
