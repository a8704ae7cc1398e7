"""The radlens executable: registers the subcommands and the global options. No logic here."""

from __future__ import annotations

import importlib
import signal

import typer

from radlens_cli import __version__, log
from radlens_cli.commands.app import app, pipeline_commands
from radlens_cli.errors import Terminated
from radlens_cli.provenance import library_versions

# Subcommand modules, in pipeline order (each registers itself on `app` when imported); the
# list is PIPELINE's, the `radlens --help` text, so a command is listed where it is registered.
COMMAND_MODULES = [name.replace("-", "_") for name in pipeline_commands()]


def _version(value: bool):
    if value:
        typer.echo(f"radlens {__version__}")
        names = ("numpy", "scipy", "pandas", "h5py", "torch", "SimpleITK", "pyradiomics-bhklab", "pydicom",
                 "highdicom", "onnx", "onnxruntime", "typer", "tqdm")
        for name, ver in library_versions(names).items():
            typer.echo(f"  {name} {ver}")
        raise typer.Exit()


@app.callback()
def _global(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More messages; tracebacks on errors (also after the subcommand)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors on stderr; no progress (also after the subcommand)."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version of radlens and its key dependencies, and exit."),
):
    log.set_verbosity(2 if verbose else (0 if quiet else 1))


for _name in COMMAND_MODULES:
    importlib.import_module(f"radlens_cli.commands.{_name}")


def run() -> None:
    """Console-script entry point."""
    # SIGPIPE stays ignored (Python's default): `radlens ... -o - | head` raises BrokenPipeError
    # on stdout, which the command wrapper ends quietly; SIG_DFL would also kill the run
    # without a word when a pipe to an internal process (a worker, the resource tracker) breaks.
    signal.signal(signal.SIGTERM, _terminated)
    app()


def _terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends it at once
    raise Terminated()
