"""The verdict cache: a text the guard has judged is not judged again.

Exact by construction: a verdict depends only on the guard (model, variant, options) and the
input the model sees, never on what shares its batch (DESIGN.md, batch invariance). So a
verdict is stored under a digest of both and handed back, with the asking record's own id and
kept fields, to any later record with the same key. Verdicts that are errors are never stored.

Entries are kept least-recently-used first out, under a cap on their estimated size in memory.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

from guardcli.core.verdicts import Record, Verdict

DEFAULT_CACHE_MB = 64.0
# Bytes one entry costs beyond its verdict's JSON: the key, the OrderedDict node, the dataclass.
ENTRY_OVERHEAD = 400
# The fields a cached verdict carries; `id`, `kept` (the record's own) and `error` (never cached)
# are not among them.
_STORED = tuple(
    f.name for f in dataclasses.fields(Verdict) if f.name not in ("id", "kept", "error")
)


def digest(*parts: Any) -> bytes:
    """A fixed-size key for JSON-ready parts (sha256: two different inputs never meet in
    practice, and the cache holds 32 bytes per key however long the text)."""
    text = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=repr)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


@dataclasses.dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    bytes: int


class VerdictCache:
    """An LRU of verdicts keyed by `digest(...)`, capped at `max_bytes` (None: no cap).

    Thread-safe: `guard serve` reads it on the event loop and fills it on the model thread."""

    def __init__(self, max_bytes: int | None = int(DEFAULT_CACHE_MB * 1024 * 1024)):
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self.bytes = 0
        self._entries: OrderedDict[bytes, tuple[dict[str, Any], int]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def of_mib(cls, mib: float) -> VerdictCache:
        """A cache capped at `mib` MiB (the unit of --cache-mb)."""
        return cls(max_bytes=int(mib * 1024 * 1024))

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self.hits, self.misses, len(self._entries), self.bytes)

    def get(self, key: bytes, record: Record) -> Verdict | None:
        """The cached verdict for `key`, as `record`'s (its id and kept fields), or None; counts
        a hit or a miss."""
        return self._get(key, record, count_miss=True)

    def peek(self, key: bytes, record: Record) -> Verdict | None:
        """As `get`, but a miss is not counted (the caller asks again where it judges)."""
        return self._get(key, record, count_miss=False)

    def count_hit(self) -> None:
        """A verdict copied from its first occurrence in the same batch."""
        with self._lock:
            self.hits += 1

    def _get(self, key: bytes, record: Record, *, count_miss: bool) -> Verdict | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += count_miss
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            fields = copy.deepcopy(found[0])  # callers may change categories in place
        return Verdict(id=record.id, kept=record.kept, **fields)

    def put(self, key: bytes, verdict: Verdict) -> None:
        """Store a judged verdict (an error verdict is not stored)."""
        if verdict.error is not None:
            return
        fields = copy.deepcopy({name: getattr(verdict, name) for name in _STORED})
        size = ENTRY_OVERHEAD + len(json.dumps(fields, default=repr))
        if self.max_bytes is not None and size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._entries[key] = (fields, size)
            self.bytes += size
            while self.max_bytes is not None and self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
