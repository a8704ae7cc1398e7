"""`radlens info`: what a radlens file holds and how it was made.

Library: io.describe.describe_file (io/describe.py; io/formats/ HDF5, io/files.py CSV sidecars),
encoders/checkpoints.py (model files, weights-only).
"""

from __future__ import annotations

import json

import typer

from radlens_cli.commands.app import command
from radlens_cli.encoders.checkpoints import describe_checkpoint
from radlens_cli.io.describe import describe_file, describe_text

def info(path: str) -> dict:
    """What `path` holds (io.describe.describe_file; model files read weights-only)."""
    return describe_file(path, checkpoint=describe_checkpoint)


@command("info")
def info_cli(
    path: str = typer.Argument(..., help="A file radlens reads or writes: HDF5, CSV/TSV (with its .json "
                                         "sidecar), report HTML, JSON sidecar, PNG figure, manifest, image, model "
                                         "file (.pt, .pth, .ckpt, .safetensors; read weights-only, never unpickled "
                                         "fully), ONNX (`-` for stdin)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
):
    """Show what a radlens file holds and how it was made.

    HDF5 outputs: the schema (case-table/1, share-model/1, ...), the datasets with their
    shapes, the parameters of the command that wrote it, the history of commands that
    led to it, failed cases and the part of a sharded run. CSV outputs: rows, columns
    and the provenance in their sidecar `<file>.json` (inputs with sha256, params, seed).
    Reports: the provenance they embed. JSON sidecars: which table they describe. Cohort manifests, checkpoints
    (radlens, ProFound/FCMAE, state dicts; loaded weights-only, so no code in the file
    runs) and ONNX models are described too. Output goes to stdout.

    Examples:

    \b
      radlens info radiomics.h5
      radlens info delta.csv
      radlens info --json share.h5 | python -m json.tool
      radlens info random.pt
    """
    result = info(path)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    for line in describe_text(result):
        typer.echo(line)
