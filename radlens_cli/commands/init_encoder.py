"""`radlens init-encoder`: a randomly initialised encoder (the null baseline).

Library: encoders/convnextv2.py, encoders/checkpoints.py.
"""

from __future__ import annotations

import typer

from radlens_cli import provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, output_option, seed_option
from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
from radlens_cli.io.files import check_output
from radlens_cli.log import info


def init_encoder(arch: str, in_chans: int, output: str, seed: int = 0, force: bool = False,
                 preprocessing: dict | None = None) -> dict:
    """Build `arch` with weights drawn from `seed` and write it as a radlens checkpoint."""
    import torch

    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.convnextv2 import build_encoder, canonical_arch

    check_output(output, force)
    torch.manual_seed(seed)
    model = build_encoder(arch, in_chans)
    n_params = sum(p.numel() for p in model.parameters())
    params = {"arch": canonical_arch(arch), "in_chans": int(in_chans), "seed": int(seed)}
    save_radlens_checkpoint(output, model, canonical_arch(arch), in_chans, preprocessing,
                            extra={"init": {"kind": "random", "seed": int(seed)},
                                   "provenance": provenance.build("init-encoder", params=params)},
                            force=force)
    info(f"wrote {output}: {canonical_arch(arch)}, {in_chans} input channel(s), "
         f"{n_params / 1e6:.2f}M parameters, seed {seed}")
    return {"arch": canonical_arch(arch), "in_chans": in_chans, "parameters": n_params}


@command("init-encoder")
def init_encoder_cli(
    arch: str = typer.Option("convnextv2_tiny", "--arch",
                             help="Architecture: convnextv2_{atto,femto,pico,nano,tiny,base,large,huge} "
                                  "(the `convnextv2_` prefix may be left out); ProFound is tiny."),
    in_chans: int = typer.Option(3, "--in-chans", min=1, help="Input channels: one per modality given to embed."),
    output: str = output_option("Checkpoint to write (radlens format; embed loads it without --arch)."),
    seed: int = seed_option(),
    force: bool = force_option(),
):
    """Write a random encoder (the null baseline).

    Builds the 3D ConvNeXt-V2 of --arch with ProFound's initialisation (truncated normal,
    std 0.02) from --seed and writes a radlens checkpoint that records the architecture and
    input channels, so `embed` and `finetune` load it without --arch. Embeddings of a
    random encoder calibrate how much radiomic R² an untrained network already gives.
    The same seed writes the same weights.

    Examples:

    \b
      radlens init-encoder --arch convnextv2_atto --in-chans 3 --seed 0 -o random.pt
      radlens init-encoder --arch tiny -o random_tiny.pt
    """
    init_encoder(arch, in_chans, output, seed, force)
