"""The library entry point: `load_guard(name_or_dir, ...)`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardcli.core.catalog import check_count
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.resolve import remote_model, resolve
from guardcli.core.spec import GuardSpec
from guardcli.core.thresholds import parse_threshold, parse_thresholds, read_thresholds
from guardcli.core.variants import BACKENDS, LLAMACPP, check_backend, runtime_name
from guardcli.families import Guard, get_family


def load_guard(
    name_or_dir: str | Path | GuardSpec = "csam-guard",
    *,
    variant: str = "auto",
    backend: str | None = None,
    threshold: float | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    threads: int | None = None,
    fail_closed: bool = False,
    cache_dir: str | None = None,
    thresholds: str | Path | dict[str, float] | None = None,
    endpoint: str | None = None,
    one_shot: bool = False,
    dtype: str | None = None,
    **options: Any,
) -> Guard:
    """Resolve a catalog name (from the local cache, offline) or a model folder to a Guard.

    >>> guard = load_guard("./models/csam-guard-tiny", variant="fp32")
    >>> guard.classify(["a watercolor of a lighthouse"])[0].flagged

    `name_or_dir` may be a GuardSpec, which carries all of these.

    `backend` (onnxruntime|openvino) runs the variant on that runtime; None: the variant's own
    (bf16 and ov-int8 are OpenVINO's, fp32/fp16/int8 onnxruntime's). Families that choose their
    own runtime (qwen3guard-gen, opencc) take onnxruntime or torch.
    `thresholds` (a {category: threshold} dict, or a JSON file of one, flat or under a
    "thresholds" key) overrides per-category thresholds of a multilabel model.
    Family options pass through `options` (qwen3guard-gen: strict, score, generate,
    served_model, api_key, concurrency). With `endpoint`, a generative guard runs on an
    OpenAI-compatible server and needs no local files.
    `dtype` (auto|float32|bfloat16) is the float type of a torch path (OpenCC); None: auto,
    bfloat16 where the CPU has native bf16, else float32. Families without one reject it.
    `one_shot` says the guard will see only a few prompts (a command-line call): the runtime then
    skips load-time work that pays off only over many batches (onnxruntime weight prepacking).
    """
    if isinstance(name_or_dir, GuardSpec):
        return _load(name_or_dir, options)
    spec = GuardSpec(
        model=name_or_dir,  # type: ignore[arg-type]  # a folder may be a Path
        variant=variant,
        backend=backend,
        threshold=threshold,
        max_length=max_length,
        batch_size=batch_size,
        threads=threads,
        fail_closed=fail_closed,
        cache_dir=cache_dir,
        thresholds=thresholds,
        endpoint=endpoint,
        one_shot=one_shot,
        dtype=dtype,
    )
    return _load(spec, options)


def _load(spec: GuardSpec, extra: dict[str, Any]) -> Guard:
    """The guard a spec asks for; `extra` are family options given beside it."""
    typed = None if isinstance(spec.options, Mapping) else spec.options
    options = {**(spec.options if isinstance(spec.options, Mapping) else {}), **extra}
    name_or_dir, variant = spec.model, spec.variant
    backend = None if spec.backend is None else runtime_name(spec.backend)
    threshold, max_length, thresholds = spec.threshold, spec.max_length, spec.thresholds
    dtype, endpoint, cache_dir = spec.dtype, spec.endpoint, spec.cache_dir
    if dtype is not None:
        options["dtype"] = dtype
    if isinstance(thresholds, str | Path):
        thresholds = read_thresholds(thresholds)
    elif thresholds is not None:
        thresholds = parse_thresholds(thresholds, "thresholds")
    if threshold is not None:
        threshold = parse_threshold(threshold, "threshold")
    for what, count in (
        ("max_length", max_length),
        ("batch_size", spec.batch_size),
        ("threads", spec.threads),
    ):
        if count is not None:
            check_count(count, what)
    if endpoint:
        model = remote_model(name_or_dir, cache_dir=cache_dir)
        options["endpoint"] = endpoint
    else:
        runtime = backend if backend in (*BACKENDS, LLAMACPP) else None
        model = resolve(name_or_dir, variant, cache_dir=cache_dir, backend=runtime)
    cls = get_family(model.family)
    if typed is not None:
        options = {**_typed_options(typed, cls), **options}
    if backend is not None and cls.runtimes:
        if backend not in cls.runtimes:
            raise GuardError(
                f"The {cls.family} family runs on {_either(list(cls.runtimes))}, not {backend!r}.",
                code=ExitCode.INPUT,
            )
        options.setdefault("backend", cls.runtimes[backend])
    else:
        check_backend(backend)
    return cls(
        model,
        threshold=threshold,
        max_length=max_length,
        batch_size=spec.batch_size,
        threads=spec.threads,
        fail_closed=spec.fail_closed,
        category_thresholds=thresholds,
        one_shot=spec.one_shot,
        **options,
    )


def _either(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _typed_options(typed: Any, cls: type[Guard]) -> dict[str, Any]:
    """A family's typed options (its `options_type` dataclass) as keywords for its Guard."""
    if cls.options_type is None or type(typed) is not cls.options_type:
        what = type(typed).__name__
        wanted = cls.options_type.__name__ if cls.options_type else "none of its own"
        raise GuardError(
            f"{what} does not apply to the {cls.family} family (its typed options: {wanted}).",
            hint="Pass the options of the model's family, or a {name: value} mapping.",
            code=ExitCode.INPUT,
        )
    assert dataclasses.is_dataclass(typed)
    return {f.name: getattr(typed, f.name) for f in dataclasses.fields(typed)}
