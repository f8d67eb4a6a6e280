"""`guard stream`: open a model whose family judges an answer as it arrives (a family with a
`stream` hook in its registry description), found from a folder or a catalog name."""

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


def _refuse(what: str, family: str, streaming: list[Family]) -> GuardError:
    names = ", ".join(f.name for f in streaming) or "none installed"
    return GuardError(
        f"{what} is a {family} model; `guard stream` runs models of a streaming family ({names}).",
        hint="Pass a model of one of those families (see `guard models`), or use `guard "
        "classify` for this one.",
        code=ExitCode.INPUT,
    )


def stream_family(name_or_dir: str) -> Family:
    """The family that will open `name_or_dir`: a folder's, a catalog entry's, or (for a
    folder that is not there) the first streaming family, whose hook says so."""
    streaming = streaming_families()
    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        family = registry.folder_family(path)
        what = f"{path}"
    elif "/" in name_or_dir or name_or_dir.startswith((".", "~")):
        if not streaming:
            raise GuardError("No installed model family can judge a stream.", code=ExitCode.MODEL)
        return streaming[0]
    else:
        family = registry.get(get_entry(name_or_dir).family)
        what = f"Model {name_or_dir!r}"
    if family.stream is None:
        raise _refuse(what, family.name, streaming)
    return family


def open_stream(
    name_or_dir: str | None = None,
    variant: str = "auto",
    *,
    chunk_tokens: int = 8,
    strict: bool = False,
    threads: int | None = None,
    cache_dir: str | None = None,
) -> Any:
    """A loaded stream guard: `.name`, `.variant` and `.run(prompt, chunks, emit, *,
    per_token, hold_back) -> summary` (its family's `stream` hook)."""
    model = name_or_dir if name_or_dir is not None else default_stream_model()
    family = stream_family(model)
    assert family.stream is not None
    return registry.load(family.stream)(
        model,
        variant,
        chunk_tokens=chunk_tokens,
        strict=strict,
        threads=threads,
        cache_dir=cache_dir,
    )
