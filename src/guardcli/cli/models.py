"""`guard models`: the catalog, and which variants are in the local cache."""

from __future__ import annotations

import sys
from typing import Any

import typer

from guardcli.cli._options import CacheDirOpt, ReportFormatOpt, VerboseOpt
from guardcli.cli._output import REPORT_FORMATS, choose_format, handle_errors
from guardcli.core.strict_json import dumps


def catalog_rows(cache_dir: str | None = None) -> list[dict[str, Any]]:
    from guardcli.core.cache import cache_status
    from guardcli.core.catalog import load_catalog

    rows = []
    for entry in load_catalog().values():
        snapshot, cached = cache_status(entry, cache_dir)
        rows.append(
            {
                "name": entry.name,
                "family": entry.family,
                "repo": entry.repo,
                "description": entry.description,
                "threshold": entry.threshold,
                "max_length": entry.max_length,
                "source": entry.source,
                "snapshot": str(snapshot) if snapshot else None,
                "variants": {
                    v: {"files": list(entry.variants[v]), "cached": cached[v]}
                    for v in entry.variants
                },
                "common_files": list(entry.common),
            }
        )
    return rows


EPILOG = (
    "Exit codes: 0 listed, 2 usage or input error (a bad models.toml).\n\n"
    "Examples:\n\n"
    "  guard models\n\n"
    "  guard models --format json | jq -r '.[] | select(.snapshot) | .name'\n\n"
    "  GUARD_MODELS=./my-models.toml guard models --cache-dir /data/hf"
)


@handle_errors
def models(
    *,
    fmt: ReportFormatOpt = None,
    cache_dir: CacheDirOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """List known models: hub repo, family, each variant's files, default threshold and max
    length, and whether each variant is in the local cache.

    Add or override entries in `$GUARD_MODELS` or ~/.config/guardcli/models.toml.
    """
    fmt = choose_format(fmt, REPORT_FORMATS)
    rows = catalog_rows(cache_dir)
    if fmt == "json":
        sys.stdout.write(dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        threshold = "per-category" if row["threshold"] is None else f"{row['threshold']:g}"
        max_length = row["max_length"] or "-"
        typer.echo(
            f"{row['name']}  ({row['family']})  {row['repo']}  "
            f"threshold {threshold}  max length {max_length}"
        )
        if row["description"]:
            typer.echo(f"  {row['description']}")
        width = max(len(v) for v in row["variants"])
        for variant, info in row["variants"].items():
            state = "cached" if info["cached"] else "not cached"
            typer.echo(f"  {variant:<{width}}  {state:<10}  {', '.join(info['files'])}")
        typer.echo(f"  {'':<{width}}  {'+ every variant':<10}  {', '.join(row['common_files'])}")
        if row["source"] != "built-in":
            typer.echo(f"  (from {row['source']})")
