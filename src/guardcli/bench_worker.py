"""One variant's session in a process of its own, driven by `bench.py` over JSON lines.

A fresh process per variant makes its peak RSS that variant's alone (plus the interpreter and
onnxruntime, reported separately as `base_rss_mb`), and keeps one variant's memory arenas from
skewing another's timings. Only one worker runs at a time; the others block on stdin.

Protocol (one JSON object per line): the parent sends {"cmd": "setup", ...}, then any number of
{"cmd": "run", "batch_size": b, "seconds": s} and finally {"cmd": "stop"}; every command gets
one reply {"ok": true, ...} or {"ok": false, "error": ...}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def rss_mb(field: str = "VmHWM") -> float | None:
    """This process's resident memory from /proc (VmHWM: peak, VmRSS: now), in MB.
    Without /proc, the peak from getrusage (KB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    if field != "VmHWM":
        return None
    import resource  # POSIX only; /proc above covers Linux

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class Worker:
    def __init__(self, setup: dict[str, Any]):
        from .backends import backend_of

        # The runtime is part of the base, not of the variant.
        if backend_of(setup["variant"]) == "openvino":
            import openvino  # noqa: F401
        else:
            import onnxruntime  # noqa: F401

        from .api import load_guard

        self.guard = load_guard(
            setup["model_dir"],
            variant=setup["variant"],
            max_length=setup.get("max_length"),
            threads=setup.get("threads"),
        )
        self.base_rss_mb = rss_mb("VmRSS")  # interpreter and libraries, no session yet
        self.texts: list[str] = setup["texts"]
        self.cursor = 0
        start = time.perf_counter()
        session = self.guard.session  # type: ignore[attr-defined]
        self.load_s = time.perf_counter() - start
        self.tokenizer_s = _timed(lambda: self.guard.tokenizer)
        self.samples: list[tuple[int, int, int, float]] = []
        run = session.run

        def timed_run(ids, mask):
            # The model-only figure: the onnxruntime call, nothing around it.
            t0 = time.perf_counter()
            out = run(ids, mask)
            self.samples.append(
                (len(ids), int(mask.sum()), int(mask.size), time.perf_counter() - t0)
            )
            return out

        session.run = timed_run

    def batch(self, size: int) -> tuple[int, int, int, float, float]:
        """One batch through the whole classify path; (prompts, real tokens, padded tokens,
        model seconds, end-to-end seconds)."""
        n = len(self.texts)
        texts = [self.texts[(self.cursor + i) % n] for i in range(size)]
        self.cursor = (self.cursor + size) % n
        self.guard.batch_size = size
        self.guard.token_budget = size * self.guard.max_length  # one model call per batch
        self.samples.clear()
        t0 = time.perf_counter()
        self.guard.classify(texts)
        e2e = time.perf_counter() - t0
        prompts = sum(s[0] for s in self.samples)
        real = sum(s[1] for s in self.samples)
        padded = sum(s[2] for s in self.samples)
        return prompts, real, padded, sum(s[3] for s in self.samples), e2e

    def scores(self, count: int) -> list[float | None]:
        """Scores of the first `count` prompts, one batch of 8 at a time, for agreement."""
        texts = self.texts[:count]
        self.guard.batch_size = 8
        return [v.score for v in self.guard.classify(texts)]

    def run(self, size: int, seconds: float) -> list[tuple[int, int, int, float, float]]:
        """Batches for `seconds` of wall time, at least one."""
        out: list[tuple[int, int, int, float, float]] = []
        deadline = time.perf_counter() + seconds
        while not out or time.perf_counter() < deadline:
            out.append(self.batch(size))
        return out


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("onnxruntime", "openvino"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    # Replies go to the original stdout; anything else printing to stdout lands on stderr.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    worker: Worker | None = None

    def reply(**payload: Any) -> None:
        proto.write(json.dumps(payload) + "\n")
        proto.flush()

    for line in sys.stdin:
        msg = json.loads(line)
        try:
            if msg["cmd"] == "setup":
                worker = Worker(msg)
                for size in msg.get("warmup", []):
                    worker.batch(size)
                reply(
                    ok=True,
                    load_s=worker.load_s,
                    tokenizer_load_s=worker.tokenizer_s,
                    base_rss_mb=worker.base_rss_mb,
                    scores=worker.scores(int(msg.get("agreement", 0))),
                    threshold=worker.guard.threshold,
                    **_versions(),
                )
            elif msg["cmd"] == "run":
                assert worker is not None
                reply(ok=True, batches=worker.run(int(msg["batch_size"]), float(msg["seconds"])))
            elif msg["cmd"] == "stop":
                reply(ok=True, peak_rss_mb=rss_mb("VmHWM"))
                return 0
        except Exception as exc:  # reported to the parent, which raises a GuardError
            reply(ok=False, error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
