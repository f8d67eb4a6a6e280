"""One variant's model in a process of its own, driven by `bench.py` over JSON lines.

A fresh process per variant makes its peak RSS that variant's alone (plus the interpreter and
its runtime, onnxruntime or torch, reported separately as `base_rss_mb`), and keeps one
variant's memory arenas from skewing another's timings. Only one worker runs at a time; the
others block on stdin. A family with several modes (qwen3guard-gen: generate, score) runs them
all from the one loaded model.

Protocol (one JSON object per line): the parent sends {"cmd": "setup", ...}, then any number of
{"cmd": "run", "batch_size": b, "seconds": s, "mode": m} and finally {"cmd": "stop"}; every
command gets one reply {"ok": true, ...} or {"ok": false, "error": ...}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from guardcli.core.verdict_cache import VerdictCache
from guardcli.jobs.bench.duplicates import DuplicateStream
from guardcli.jobs.bench.plan import AGREEMENT_PROMPTS


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


Batch = tuple[int, int, int, float, float, int, int, int]


class Worker:
    def __init__(self, setup: dict[str, Any]):
        from guardcli.core.spec import GuardSpec

        _import_runtime(setup["variant"])  # the runtime is part of the base, not of the variant
        from guardcli.families.loader import load_guard

        # The parent's GuardSpec for this path (bench.plan.guard_spec), as JSON.
        self.guard = load_guard(GuardSpec.from_json(setup["spec"]))
        self.base_rss_mb = rss_mb("VmRSS")  # interpreter and libraries, no model yet
        self.texts: list[str] = setup["texts"]
        self.cursor = 0
        # --duplicates: each condition (no cache, cache) walks its own copy of one stream.
        self.duplicates = float(setup.get("duplicates") or 0.0)
        self.streams = {c: DuplicateStream(self.texts, self.duplicates) for c in (False, True)}
        self.cache = VerdictCache()
        start = time.perf_counter()
        calls = self.guard.runtime_calls()
        self.load_s = time.perf_counter() - start
        self.tokenizer_s = _timed(lambda: self.guard.tokenizer)
        # Per model call in the current score_batch: seconds, new tokens when generating, and
        # prompt tokens whose KV a known template head supplied (not computed).
        self.calls: list[tuple[float, int, int]] = []
        # Per score_batch: (prompts, real tokens, padded tokens, model seconds, new tokens,
        # reused tokens).
        self.samples: list[tuple[int, int, int, float, int, int]] = []
        for owner, name in calls:
            setattr(owner, name, self._timed_call(getattr(owner, name), name == "generate"))
        score_batch = self.guard.score_batch

        def timed_batch(batch):
            self.calls.clear()
            t0 = time.perf_counter()
            out = score_batch(batch)
            elapsed = time.perf_counter() - t0
            lengths = [len(e.ids) for e in batch]
            model_s = sum(c[0] for c in self.calls) if calls else elapsed
            new = sum(c[1] for c in self.calls)
            reused = sum(c[2] for c in self.calls)
            padded = len(batch) * max(lengths)
            self.samples.append((len(batch), sum(lengths), padded, model_s, new, reused))
            return out

        self.guard.score_batch = timed_batch  # type: ignore[method-assign]

    def _timed_call(self, call, generates: bool):
        # A causal LM that reuses a template head's KV (runtime.causal_lm) says which head a
        # batch of prompts (the call's first argument) starts with.
        shared_prefix = getattr(getattr(call, "__self__", None), "shared_prefix", None)

        def timed(*args, **kwargs):
            # The model-only figure: the runtime call, nothing around it.
            t0 = time.perf_counter()
            out = call(*args, **kwargs)
            elapsed = time.perf_counter() - t0
            new = sum(len(ids) for ids in out) if generates else 0
            head = shared_prefix(args[0]) if shared_prefix and args else None
            self.calls.append((elapsed, new, len(head) * len(args[0]) if head else 0))
            return out

        return timed

    def use_mode(self, mode: str | None) -> None:
        if mode is not None:
            self.guard.use_mode(mode)

    def batch(self, size: int, cached: bool = False) -> Batch:
        """One batch through the whole classify path; (prompts judged by the model, real
        tokens, padded tokens, model seconds, end-to-end seconds, generated tokens, prompts in,
        tokens a reused template head supplied).
        `cached`: through the verdict cache (with --duplicates)."""
        if self.duplicates:
            texts = self.streams[cached].take(size)
        else:
            n = len(self.texts)
            texts = [self.texts[(self.cursor + i) % n] for i in range(size)]
            self.cursor = (self.cursor + size) % n
        self.guard.batch_size = size
        self.guard.token_budget = size * self.guard.max_length  # one model call per batch
        self.guard.verdict_cache = self.cache if cached else None
        self.samples.clear()
        t0 = time.perf_counter()
        self.guard.classify(texts)
        e2e = time.perf_counter() - t0
        self.guard.verdict_cache = None
        s = self.samples
        return (
            sum(x[0] for x in s),
            sum(x[1] for x in s),
            sum(x[2] for x in s),
            sum(x[3] for x in s),
            e2e,
            sum(x[4] for x in s),
            size,
            sum(x[5] for x in s),
        )

    def cache_identical(self, count: int) -> bool:
        """Whether the first `count` prompts of a duplicate stream get byte-identical verdicts
        with the verdict cache and without it."""
        from guardcli.core.strict_json import dumps

        texts = DuplicateStream(self.texts, self.duplicates, seed=1).take(count)
        plain = [dumps(v.to_dict()) for v in self.guard.classify(texts)]
        self.guard.verdict_cache = VerdictCache()
        try:
            cached = [dumps(v.to_dict()) for v in self.guard.classify(texts)]
        finally:
            self.guard.verdict_cache = None
        return plain == cached

    def judged(self, count: int) -> list[dict[str, Any]]:
        """Verdicts on the first `count` prompts, one batch of 8 at a time, for agreement."""
        texts = self.texts[:count]
        self.guard.batch_size = 8
        return [
            {"score": v.score, "flagged": v.flagged, "severity": v.severity}
            for v in self.guard.classify(texts)
        ]

    def run(self, size: int, seconds: float, cached: bool = False) -> list[Batch]:
        """Batches for `seconds` of wall time, at least one."""
        out: list[Batch] = []
        deadline = time.perf_counter() + seconds
        while not out or time.perf_counter() < deadline:
            out.append(self.batch(size, cached))
        return out


def _import_runtime(variant: str) -> None:
    from guardcli.core.variants import backend_of
    from guardcli.jobs.bench.runner import TORCH_PATHS

    if variant in TORCH_PATHS:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    elif backend_of(variant) == "openvino":
        import openvino  # noqa: F401
    else:
        import onnxruntime  # noqa: F401


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for dist in ("onnxruntime", "openvino", "torch"):
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
                agreement: dict[str, list[dict[str, Any]]] = {}
                identical: dict[str, bool] = {}
                for mode in msg.get("modes") or [None]:
                    worker.use_mode(mode)
                    for size in msg.get("warmup", []):
                        worker.batch(size)
                    agreement[mode or ""] = worker.judged(int(msg.get("agreement", 0)))
                    if worker.duplicates:
                        identical[mode or ""] = worker.cache_identical(2 * AGREEMENT_PROMPTS)
                reply(
                    ok=True,
                    load_s=worker.load_s,
                    tokenizer_load_s=worker.tokenizer_s,
                    base_rss_mb=worker.base_rss_mb,
                    agreement=agreement,
                    cache_identical=identical,
                    threshold=worker.guard.threshold,
                    **_versions(),
                )
            elif msg["cmd"] == "run":
                assert worker is not None
                worker.use_mode(msg.get("mode"))
                size, seconds = int(msg["batch_size"]), float(msg["seconds"])
                reply(ok=True, batches=worker.run(size, seconds, bool(msg.get("cached"))))
            elif msg["cmd"] == "stop":
                reply(ok=True, peak_rss_mb=rss_mb("VmHWM"))
                return 0
        except Exception as exc:  # reported to the parent, which raises a GuardError
            reply(ok=False, error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
