"""`radlens layers`: the layers of an encoder that `embed --layer` takes, with output shapes.

Library: encoders/infer.py (layer listing for torch models), encoders/layers.py (the calls of a module
run more than once per forward pass), encoders/onnx_encoder.py (ONNX tensors).
"""

from __future__ import annotations

import json

import typer

from radlens_cli.commands.app import command
from radlens_cli.commands.options import (arch_option, crop_option, layout_option, parse_triple,
                                          trust_checkpoint_option, weights_option)
from radlens_cli.encoders.infer import list_layers


def layers(encoder: str, arch: str | None = None, weights: str | None = None, crop: str | None = None,
           layout: str | None = None, channels: int | None = None, trust_checkpoint: bool = False) -> dict:
    """{input_shape, rows} for ENCODER; see radlens_cli.encoders.infer.list_layers."""
    if isinstance(crop, str):
        crop = parse_triple(crop, "--crop", int)
    return list_layers(encoder, arch=arch, weights=weights, crop=crop, layout=layout, channels=channels,
                       trust=trust_checkpoint)


@command("layers")
def layers_cli(
    encoder: str = typer.Argument(..., help="Encoder as `embed --encoder` takes it: checkpoint, .onnx, TorchScript "
                                            "or package.module:factory."),
    weights: str = weights_option(),
    arch: str = arch_option(),
    crop: str = crop_option("Input box x,y,z in voxels, the same order as embed's --crop [default: the "
                            "encoder's record, else 224,224,64]."),
    layout: str = layout_option(),
    channels: int = typer.Option(None, "--channels", min=1,
                                 help="Input channels [default: what the encoder records or declares, else 1]."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    trust_checkpoint: bool = trust_checkpoint_option("Load a checkpoint that needs full unpickling (runs code "
                                                     "stored in the file); only for files you trust."),
):
    """List the layers embed --layer takes, with their shapes.

    Runs the encoder once on a zero input of (1, channels, box) in the given layout
    (ONNX: static shape inference, nothing is run) and prints, tab-separated on
    stdout, every candidate: `final` (the model's own output), `stage1..stage4` for
    the built-in encoder, each torch sub-module's dotted name or each ONNX tensor
    name, its kind, its output shape, `dim`, the embedding size after pooling over
    space (the channel count), and `calls`, how many times it runs per forward pass.
    A module that runs k > 1 times (a shared activation, a ResNet block's one ReLU)
    gets one row per call, NAME#1..NAME#k, each with its own shape: --layer needs
    one of these (or NAME#last). `?` marks what is not known (a module the forward
    pass did not run has calls 0; a TorchScript module called inside a loop or
    branch). Factories and TorchScript files run code by design.

    Examples:

    \b
      radlens layers random.pt --crop 224,224,64
      radlens layers segresnet.onnx --crop 128,128,64 --layout xyz | grep Add
      radlens layers mynets:segresnet --weights model.ckpt --layout xyz --channels 1
      radlens layers mynets:resnet3d --crop 112,112,112 | grep 'layer4.2.relu#'
    """
    result = layers(encoder, arch=arch, weights=weights, crop=crop, layout=layout, channels=channels,
                    trust_checkpoint=trust_checkpoint)
    if as_json:
        typer.echo(json.dumps({"input_shape": list(result["input_shape"]),
                               "layers": [{**r, "shape": None if r["shape"] is None else list(r["shape"])}
                                          for r in result["rows"]]}, indent=2))
        return
    typer.echo("layer\tkind\toutput_shape\tdim\tcalls")
    for r in result["rows"]:
        shape = "?" if r["shape"] is None else "x".join(map(str, r["shape"]))
        typer.echo(f"{r['layer']}\t{r['kind']}\t{shape}\t{'?' if r['dim'] is None else r['dim']}\t"
                   f"{'?' if r['calls'] is None else r['calls']}")
