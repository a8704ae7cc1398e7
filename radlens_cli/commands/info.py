"""`radlens info`: what a radlens file holds and how it was made."""

from __future__ import annotations

import json

import typer

from radlens_cli.commands._util import command
from radlens_cli.io.tables import open_hdf5_file, read_h5_attrs


def info(path: str) -> dict:
    """Schema, datasets with shapes, parameters and history of a radlens HDF5 file; for a
    model file (.pt/.pth/.ckpt/.safetensors), what it holds, read weights-only."""
    import os

    import h5py

    from radlens_cli.io.tables import is_hdf5

    if path != "-" and os.path.isfile(path) and not is_hdf5(path) and \
            path.lower().endswith((".pt", ".pth", ".ckpt", ".bin", ".tar", ".safetensors", ".ts")):
        from radlens_cli.encoders.checkpoints import describe_checkpoint

        d = describe_checkpoint(path)
        return {"path": path, "schema": f"model file ({d['format']}): {d['kind']}", "datasets": {},
                "params": {k: v for k, v in d.items() if k not in ("path", "provenance") and v is not None},
                **({"history": [d["provenance"]]} if isinstance(d.get("provenance"), dict) else {})}

    with open_hdf5_file(path) as f:
        attrs = read_h5_attrs(f)
        datasets = {}
        f.visititems(lambda name, obj: datasets.__setitem__(name, list(obj.shape))
                     if isinstance(obj, h5py.Dataset) else None)
    out = {"path": path, "schema": attrs.get("radlens_schema"), "datasets": datasets}
    for key in ("radlens_version", "command", "created", "cite"):
        if key in attrs:
            out[key] = attrs[key]
    for key in ("params", "inputs", "history", "failures", "versions"):
        if key in attrs:
            try:
                out[key] = json.loads(attrs[key])
            except (TypeError, ValueError):
                out[key] = attrs[key]
    return out


@command("info")
def info_cli(
    path: str = typer.Argument(..., help="A radlens HDF5 file (`-` for stdin), or a model file (.pt, .pth, "
                                         ".ckpt, .safetensors; read weights-only, never unpickled fully)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
):
    """Show what a radlens file holds and how it was made.

    Prints the file's schema (case-table/1, share-model/1, ...), its datasets with their
    shapes, the parameters of the command that wrote it and the history of commands that
    led to it. Output goes to stdout.

    Examples:

    \b
      radlens info radiomics.h5
      radlens info --json share.h5 | python -m json.tool
    """
    result = info(path)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo(f"{result['path']}: {result['schema'] or 'not a radlens file'}")
    for name, shape in result["datasets"].items():
        typer.echo(f"  {name}  {'x'.join(map(str, shape)) or 'scalar'}")
    if "params" in result:
        typer.echo(f"params: {json.dumps(result['params'], sort_keys=True)}")
    for rec in result.get("history", []):
        typer.echo(f"history: {rec.get('created', '')}  {rec.get('command', '')}")
