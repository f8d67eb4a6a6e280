"""The user's model file (`$GUARD_MODELS`, else ~/.config/guardcli/models.toml): parsed and
checked into catalog entries, every mistake a GuardError naming the file and the table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from guardcli.core import registry
from guardcli.core.errors import ExitCode, GuardError
from guardcli.core.model_entry import ModelEntry, check_count
from guardcli.core.thresholds import parse_threshold


def user_catalog_path() -> Path:
    """`$GUARD_MODELS`, else `$XDG_CONFIG_HOME/guardcli/models.toml` (~/.config by default)."""
    if env := os.environ.get("GUARD_MODELS"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "guardcli" / "models.toml"


def _toml_loads(text: str, path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
        except ModuleNotFoundError:
            raise GuardError(
                f"Reading {path} needs Python 3.11+ or the 'tomli' package.",
                hint="Install it with: pip install tomli (or unset GUARD_MODELS).",
                code=ExitCode.INPUT,
            ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GuardError(
            f"{path} is not valid TOML: {exc}.", code=ExitCode.INPUT, hint=USER_FILE_HINT
        ) from None


USER_FILE_HINT = (
    "Each model is a [models.NAME] table with repo, and optionally family (default seqcls), "
    "threshold, max_length, description and variants = {fp32 = 'onnx/model.onnx', ...}."
)


def _as_files(value: Any, where: str, path: Path) -> tuple[str, ...]:
    files = [value] if isinstance(value, str) else value
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise GuardError(
            f"{path}: {where} must be a file path or a list of them.",
            code=ExitCode.INPUT,
            hint=USER_FILE_HINT,
        )
    return tuple(files)


def _user_entry(name: str, spec: Any, base: ModelEntry | None, path: Path) -> ModelEntry:
    if not isinstance(spec, dict):
        raise GuardError(f"{path}: [models.{name}] must be a table.", code=ExitCode.INPUT)
    known = {"repo", "family", "threshold", "max_length", "description", "variants", "files"}
    if unknown := sorted(set(spec) - known):
        raise GuardError(
            f"{path}: [models.{name}] has unknown key(s): {', '.join(unknown)}.",
            code=ExitCode.INPUT,
            hint=USER_FILE_HINT,
        )
    if base is None and "repo" not in spec:
        raise GuardError(f"{path}: [models.{name}] needs repo = 'org/name'.", code=ExitCode.INPUT)
    fields: dict[str, Any] = {}
    where = f"{path}: [models.{name}]"
    for key in ("repo", "family", "description"):
        if key in spec and not isinstance(spec[key], str):
            raise GuardError(f"{where} {key} must be a string.", code=ExitCode.INPUT)
    family = spec.get("family", base.family if base is not None else "seqcls")
    if family not in registry.names():
        raise GuardError(
            f"{where} family = {family!r} is not a model family guardcli knows.",
            hint=f"Known families: {', '.join(registry.names())}.",
            code=ExitCode.INPUT,
        )
    if base is not None:
        fields = {k: getattr(base, k) for k in base.__dataclass_fields__}
    else:
        described = registry.get(family)
        # A new entry that gives no threshold or max_length: the family's (the README documents
        # 512 for seqcls, the usual fine-tune context; a local folder keeps CSAM-Guard's 384).
        threshold = described.threshold
        max_length = described.entry_max_length or described.max_length
        fields = {"family": family, "threshold": threshold, "max_length": max_length}
    fields.update({k: spec[k] for k in ("repo", "family", "description") if k in spec})
    for key, kind in (("threshold", (int, float)), ("max_length", int)):
        if key in spec:
            if not isinstance(spec[key], kind) or isinstance(spec[key], bool):
                raise GuardError(
                    f"{path}: [models.{name}] {key} must be a number.", code=ExitCode.INPUT
                )
    if "threshold" in spec:
        fields["threshold"] = parse_threshold(spec["threshold"], f"{where} threshold")
    if "max_length" in spec:
        fields["max_length"] = check_count(spec["max_length"], f"{where} max_length")
    if "variants" in spec:
        if not isinstance(spec["variants"], dict) or not spec["variants"]:
            raise GuardError(
                f"{path}: [models.{name}] variants must be a table of variant = file(s).",
                code=ExitCode.INPUT,
                hint=USER_FILE_HINT,
            )
        fields["variants"] = {
            v: _as_files(f, f"variants.{v}", path) for v, f in spec["variants"].items()
        }
    if "files" in spec:
        fields["common"] = _as_files(spec["files"], "files", path)
    fields["name"] = name
    fields["source"] = str(path)
    return ModelEntry(**fields)
