"""The family registry: what each model family says about itself, found the way plugins are.

A family is a package that exposes `FAMILY = Family(...)`. Built-in families are the
subpackages of `guardcli.families`, found by scanning that package (no install step, so a
checkout run with PYTHONPATH=src sees its own families); third-party ones register through the
`guardcli.families` entry point group, as llm and pytest plugins do:

    [project.entry-points."guardcli.families"]
    my-family = "my_package.my_family"        # a module with FAMILY, or the Family itself

Code outside a family's folder asks the registry and never names a family. Everything a
Family points to (its Guard, resolver, builders, recipes) is a "module:attribute" reference,
imported on first use, so that listing families stays cheap and never imports torch.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from guardcli.core.errors import GuardError
from guardcli.core.synthetic import SYNTHETIC_MARKER

ENTRY_POINT_GROUP = "guardcli.families"
BUILTIN_PACKAGE = "guardcli.families"


# The categories of OpenAI's moderation endpoint (omni-moderation), which OpenAI-style clients
# read; a family maps its own categories onto these where they correspond.
OPENAI_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)


@dataclass(frozen=True)
class Family:
    """One model family's description.

    `marker`: a file whose presence in a folder says the folder holds this family; `detect`
    ("module:function(folder) -> bool") when a file name is not enough. Detection asks families
    by `priority` (lower first); a family with neither is the fallback for folders no other
    family claims (one family at most).
    `runs_onnx`: its variants are guardcli's ONNX graphs (fp32, fp16, int8, and the OpenVINO
    paths on them), resolved generically. Otherwise `resolve` ("module:function(folder, variant,
    entry) -> ResolvedModel", entry None for a local folder) chooses the variant.
    `generative`: a guard that can run on a remote OpenAI-compatible endpoint (--endpoint).
    `synth`: synthetic builders by catalog name ("module:function(out, *, size, seed, log)").
    `export`: "module:function(src, out, *, tolerance, log) -> ExportResult" for `guard export
    --family NAME`, and `exports`: "module:function(src) -> bool" to claim a checkpoint that
    names no family.
    """

    name: str
    guard: str
    threshold: float = 0.5
    max_length: int = 512
    # A models.toml entry of this family that gives no max_length (None: max_length).
    entry_max_length: int | None = None
    marker: str | None = None
    detect: str | None = None
    priority: int = 100
    order: int = 100  # where it is listed (help texts, messages)
    runs_onnx: bool = False
    resolve: str | None = None
    # "module:function(folder) -> list[str]": the variants a folder of this family holds that
    # this install can run (None: guardcli's ONNX/OpenVINO files).
    variants: str | None = None
    generative: bool = False
    synth: Mapping[str, str] = field(default_factory=dict)
    export: str | None = None
    exports: str | None = None
    # Its export writes into the source folder unless told --out, and a folder its `exports`
    # claims is always its own (--family does not choose another recipe).
    export_in_place: bool = False
    # `guard quantize` of this family's folder: "module:function(src, dst)" writing its FP16
    # graph from the FP32 one (None: the card's recipe, I/O kept FP32), and the MatMuls its
    # dynamic INT8 keeps in float when --keep-float is not given (None: the card's, down_proj).
    fp16: str | None = None
    int8_keep_float: tuple[str, ...] | None = None
    # Said when a catalog model of this family is not in the cache ({name}: the entry's name).
    uncached_hint: str = "Run `guard fetch {name}`, or pass --model DIR."
    # "module:function(name_or_dir, variant, *, chunk_tokens, strict, threads, cache_dir)" that
    # opens a model for `guard stream` (judging an answer as it arrives); None: it cannot.
    stream: str | None = None
    # Its category names -> the OpenAI moderation categories each corresponds to
    # (OPENAI_CATEGORIES), for `guard serve`'s /v1/moderations; names compare case-insensitively.
    openai_categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def claims(self, folder: Path) -> bool:
        """Whether `folder` holds a model of this family (its marker file, or its detector)."""
        if self.detect is not None:
            return bool(load(self.detect)(folder))
        return self.marker is not None and (folder / self.marker).exists()

    @property
    def defaults(self) -> tuple[float, int]:
        return self.threshold, self.max_length

    def guard_class(self) -> Any:
        return load(self.guard)


def load(ref: str | Callable[..., Any]) -> Any:
    """The object a "module:attribute" reference names (a callable is returned as it is)."""
    if callable(ref):
        return ref
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


def _entry_points() -> Iterable[Any]:
    """The one seam to third-party families (tests replace it)."""
    return metadata.entry_points(group=ENTRY_POINT_GROUP)


def _builtin_packages() -> list[str]:
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [
        f"{BUILTIN_PACKAGE}.{m.name}"
        for m in pkgutil.iter_modules(spec.submodule_search_locations)
        if m.ispkg
    ]


def _as_families(obj: Any, where: str) -> list[Family]:
    obj = getattr(obj, "FAMILY", obj)
    items = obj if isinstance(obj, list | tuple) else [obj]
    if not all(isinstance(f, Family) for f in items):
        raise GuardError(
            f"{where} does not describe a guardcli family.",
            hint="Point it at a guardcli.core.registry.Family, or a module that defines FAMILY.",
        )
    return list(items)


@functools.cache
def families() -> dict[str, Family]:
    """Every family: the built-in ones, then those of installed distributions."""
    found: dict[str, Family] = {}
    for package in _builtin_packages():
        module = importlib.import_module(package)
        if hasattr(module, "FAMILY"):
            for family in _as_families(module, package):
                found.setdefault(family.name, family)
    for ep in _entry_points():
        for family in _as_families(ep.load(), f"entry point {ep.name!r} ({ep.value})"):
            found.setdefault(family.name, family)
    return dict(sorted(found.items(), key=lambda kv: kv[1].order))


def refresh() -> None:
    """Forget what was found (after installing a family, or in tests)."""
    families.cache_clear()


def names() -> tuple[str, ...]:
    return tuple(families())


def get(name: str) -> Family:
    try:
        return families()[name]
    except KeyError:
        raise GuardError(f"No model family {name!r} (known: {', '.join(families())}).") from None


def fallback() -> Family:
    """The family of a folder no family's marker or detector claims."""
    loose = [f for f in families().values() if f.marker is None and f.detect is None]
    if len(loose) != 1:
        raise GuardError(f"Expected one fallback family, found {[f.name for f in loose]}.")
    return loose[0]


def folder_family(folder: Path) -> Family:
    """The family a model folder's files say it is."""
    folder = Path(folder)
    for family in sorted(families().values(), key=lambda f: f.priority):
        if (family.marker or family.detect) and family.claims(folder):
            return family
    return fallback()


def marker_family(folder: Path) -> str | None:
    """The family the synthetic marker in `folder` names, if there is one."""
    marker = Path(folder) / SYNTHETIC_MARKER
    if not marker.exists():
        return None
    return json.loads(marker.read_text()).get("family")


def synth_builders() -> dict[str, tuple[Family, str]]:
    """Each synthetic model name -> (its family, its builder reference)."""
    return {name: (f, ref) for f in families().values() for name, ref in f.synth.items()}
