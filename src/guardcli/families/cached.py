"""Judging through a verdict cache (core/verdict_cache.py): each distinct input once.

The key of a record is a digest of the guard's identity (its family, model, variant, threshold
and every option it was built with or switched to, such as a generative guard's mode) and of
the input the model sees: the prepared text (for chat families, the rendered conversation).
A record longer than the guard's character limit is keyed by its text and messages instead,
because its tokens come from cutting the record itself (`Guard._encode_long`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from guardcli.core.errors import GuardError
from guardcli.core.verdict_cache import VerdictCache, digest
from guardcli.core.verdicts import Record, Verdict
from guardcli.families.judgement import cut_record


class Guard(Protocol):
    """What the cache needs of a guard (families/base.py's Guard, which calls into here)."""

    @property
    def truncation_side(self) -> str: ...

    @property
    def char_limit(self) -> int: ...

    def prepare(self, record: Record) -> tuple[str, bool]: ...

    def classify_records(
        self, records: list[Record], on_batch: Callable[[int], None] | None = None
    ) -> list[Verdict]: ...


# Attributes that say how fast a guard runs, not what it answers.
RUNTIME_ONLY = frozenset({"batch_size", "token_budget", "threads", "one_shot", "verdict_cache"})


def _plain(value: Any) -> Any:
    """JSON-ready form of an option value (objects without one: their repr)."""
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def guard_identity(guard: Guard) -> str:
    """What decides a guard's verdicts besides the input: its class and every public attribute
    set by its constructor or a mode switch (lazily loaded sessions and runtime knobs such as
    threads and batch size excluded)."""
    lazy = {
        name
        for klass in type(guard).__mro__
        for name, attr in vars(klass).items()
        if isinstance(attr, cached_property)
    }
    state = {
        name: _plain(value)
        for name, value in vars(guard).items()
        if not name.startswith("_") and name not in RUNTIME_ONLY and name not in lazy
    }
    return digest(type(guard).__module__, type(guard).__qualname__, state).hex()


def record_key(guard: Guard, identity: str, record: Record) -> bytes | None:
    """The cache key of `record` under `guard`; None for a record that cannot be keyed (a read
    error, or one `prepare` rejects): the guard judges it, and it is never cached."""
    if record.error is not None:
        return None
    try:
        if cut_record(record, guard.char_limit, guard.truncation_side) is not None:
            return digest(identity, "record", record.text, record.messages)
        text, shortened = guard.prepare(record)
    except GuardError:
        raise
    except Exception:
        return None
    return digest(identity, "input", text, shortened)


def as_record(verdict: Verdict, record: Record) -> Verdict:
    """`verdict`, given to `record`: its id and kept fields, its own copy of the categories."""
    return dataclasses.replace(
        verdict, id=record.id, kept=record.kept, categories=copy.deepcopy(verdict.categories)
    )


def classify_cached(
    guard: Guard,
    records: list[Record],
    cache: VerdictCache,
    on_batch: Callable[[int], None] | None = None,
) -> list[Verdict]:
    """`guard.classify_records(records)`, judging each distinct key once: a cached verdict is
    reused; within `records` the first occurrence is judged and later ones copied. A record
    whose first occurrence came out as an error is judged on its own (errors carry the line)."""
    identity = guard_identity(guard)
    out: list[Verdict | None] = [None] * len(records)
    todo: list[tuple[int, bytes | None]] = []
    first: dict[bytes, int] = {}  # key -> position in todo
    copies: list[tuple[int, int]] = []  # (record, position in todo of its first occurrence)
    for i, record in enumerate(records):
        key = record_key(guard, identity, record)
        if key is not None:
            if key in first:
                copies.append((i, first[key]))
                continue
            hit = cache.get(key, record)
            if hit is not None:
                out[i] = hit
                continue
            first[key] = len(todo)
        todo.append((i, key))
    judged = guard.classify_records([records[i] for i, _ in todo], on_batch) if todo else []
    for (i, key), verdict in zip(todo, judged, strict=True):
        out[i] = verdict
        if key is not None:
            cache.put(key, verdict)
    again: list[int] = []
    for i, t in copies:
        if judged[t].error is None:
            out[i] = as_record(judged[t], records[i])
            cache.count_hit()
        else:
            again.append(i)
    if again:
        redone = guard.classify_records([records[i] for i in again], on_batch)
        for i, verdict in zip(again, redone, strict=True):
            out[i] = verdict
    assert all(v is not None for v in out)
    return out  # type: ignore[return-value]
