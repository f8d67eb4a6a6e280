"""The `guard` command: Typer wiring only. Each command lives in its own module."""

from __future__ import annotations

import typer

from guardcli import __version__
from guardcli.cli.bench import EPILOG as BENCH_EPILOG
from guardcli.cli.bench import bench
from guardcli.cli.classify import EPILOG as CLASSIFY_EPILOG
from guardcli.cli.classify import classify
from guardcli.cli.compare import EPILOG as COMPARE_EPILOG
from guardcli.cli.compare import compare
from guardcli.cli.export import EPILOG as EXPORT_EPILOG
from guardcli.cli.export import export
from guardcli.cli.fetch import EPILOG as FETCH_EPILOG
from guardcli.cli.fetch import fetch
from guardcli.cli.models import EPILOG as MODELS_EPILOG
from guardcli.cli.models import models
from guardcli.cli.probe_cpu import EPILOG as PROBE_CPU_EPILOG
from guardcli.cli.probe_cpu import probe_cpu
from guardcli.cli.quantize import EPILOG as QUANTIZE_EPILOG
from guardcli.cli.quantize import quantize
from guardcli.cli.serve import EPILOG as SERVE_EPILOG
from guardcli.cli.serve import serve
from guardcli.cli.stream import EPILOG as STREAM_EPILOG
from guardcli.cli.stream import stream
from guardcli.cli.sweep import EPILOG as SWEEP_EPILOG
from guardcli.cli.sweep import sweep
from guardcli.cli.synth import EPILOG as SYNTH_EPILOG
from guardcli.cli.synth import synth

app = typer.Typer(
    name="guard",
    help="Run small open-weight safety classifiers in front of generative-AI services.\n\n"
    "Exit codes: 0 nothing flagged, 1 flagged, 2 usage or input error, 3 model or runtime error.",
    epilog="Examples:\n\n"
    "  guard probe-cpu\n\n"
    "  guard fetch csam-guard --variant auto\n\n"
    "  guard classify 'a watercolor lighthouse at dusk'\n\n"
    "  jq -c '{id, text: .prompt}' in.jsonl | guard classify - > verdicts.jsonl\n\n"
    "  guard sweep labelled.jsonl --group-by lang --plot sweep.png\n\n"
    "Shell completion: guard --install-completion. Third-party warnings and logs: --verbose.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command(epilog=CLASSIFY_EPILOG)(classify)
app.command(epilog=SYNTH_EPILOG)(synth)
app.command(epilog=SWEEP_EPILOG)(sweep)
app.command(epilog=MODELS_EPILOG)(models)
app.command(epilog=FETCH_EPILOG)(fetch)
app.command("probe-cpu", epilog=PROBE_CPU_EPILOG)(probe_cpu)
app.command(epilog=BENCH_EPILOG)(bench)
app.command(epilog=SERVE_EPILOG)(serve)
app.command(epilog=STREAM_EPILOG)(stream)
app.command(epilog=EXPORT_EPILOG)(export)
app.command(epilog=QUANTIZE_EPILOG)(quantize)
app.command(epilog=COMPARE_EPILOG)(compare)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"guardcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        "-V",
        callback=_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Run small open-weight safety classifiers in front of generative-AI services."""


def main() -> None:
    app(prog_name="guard")
