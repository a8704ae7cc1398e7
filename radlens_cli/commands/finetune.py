"""`radlens finetune`: fine-tune an encoder on a manifest task (the paper's Section 3.3).

Library: encoders.training.finetune (encoders/training/run.py; the loop, metrics, augmentation and
resume in encoders/training/).
"""

from __future__ import annotations

from typing import Optional

import typer

from radlens_cli.commands.app import command
from radlens_cli.commands.options import (crop_option, device_option, force_option, layout_option, mask_option,
                                          modalities_option, norm_option, norm_region_option, orient_option,
                                          output_option, parse_triple, seed_option, spacing_option,
                                          strict_geometry_option, trust_checkpoint_option)
from radlens_cli.names import parse_list


def finetune(manifest: str, modalities: list[str], mask: str, encoder: str, task: str, output: str,
             **options) -> dict:
    """Fine-tune `encoder` and write the checkpoint (encoders.training.finetune: every option
    and what it returns is its); only rank 0 writes files under torchrun."""
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.training.run import finetune as run_finetune

    return run_finetune(manifest, modalities, mask, encoder, task, output, **options)


@command("finetune")
def finetune_cli(
    manifest: str = typer.Argument(..., help="Cohort manifest CSV (case_id, image and mask columns, split, targets)."),
    modalities: str = modalities_option(),
    mask: str = mask_option(),
    encoder: str = typer.Option(..., "--encoder", help="Pre-trained encoder: ProFound/FCMAE, state dict or radlens checkpoint (read weights-only)."),
    task: str = typer.Option(..., "--task", help="classify (cross-entropy, QWK), regress (MSE) or segment (Dice)."),
    target: Optional[str] = typer.Option(None, "--target", help="Numeric manifest column to classify or regress."),
    seg_mask: Optional[str] = typer.Option(None, "--seg-mask", help="segment: target mask column, COLUMN[:LABEL[+LABEL]] or COLUMN:NAME[+NAME] (DICOM-SEG/RTSTRUCT)."),
    output: str = output_option("Fine-tuned radlens checkpoint (.pt); `radlens embed` loads it without --arch."),
    metrics: Optional[str] = typer.Option(None, "--metrics", help="Write per-epoch train/val rows and the final test row to this CSV."),
    epochs: int = typer.Option(100, "--epochs", help="Training epochs (the paper: 100)."),
    lr: float = typer.Option(1e-3, "--lr", help="Peak AdamW learning rate (the paper: 1e-3)."),
    batch_size: int = typer.Option(2, "--batch-size", help="Volumes per optimiser step (per GPU under torchrun)."),
    weight_decay: float = typer.Option(0.05, "--weight-decay", help="AdamW weight decay (not on norms, biases, GRN)."),
    warmup_epochs: int = typer.Option(5, "--warmup-epochs", help="Epochs of linear warm-up before the cosine decay."),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Train the head only (the paper's 'pre-trained' baseline)."),
    balanced: bool = typer.Option(False, "--balanced", help="classify: class-balanced sampling (draws with replacement)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Random flips and intensity scale/shift on training volumes."),
    seg_channels: int = typer.Option(128, "--seg-channels", min=1, help="segment: UPerNet width (channels of its PPM/FPN convs)."),
    spacing: Optional[str] = spacing_option(),
    crop: Optional[str] = crop_option(),
    norm: Optional[str] = norm_option(),
    norm_region: Optional[str] = norm_region_option(),
    orient: Optional[str] = orient_option(),
    layout: Optional[str] = layout_option(),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Keep preprocessed volumes here across runs [default: a temporary folder]."),
    workers: Optional[int] = typer.Option(None, "--jobs", "-j", min=0, help="DataLoader worker processes per rank [default: 0 on CPU, up to 8 per GPU]."),
    workers_alias: Optional[int] = typer.Option(None, "--workers", min=0, hidden=True, help="Old name of --jobs."),
    drop_path: float = typer.Option(0.0, "--drop-path", help="Stochastic depth rate of the encoder's last block (0 to this over the blocks)."),
    resume: bool = typer.Option(True, "--resume/--no-resume", help="Continue from OUTPUT.state left by an interrupted run."),
    save_every: int = typer.Option(0, "--save-every", min=0, metavar="K",
                                   help="Also write the encoder every K epochs as OUTPUT-epoch003.pt etc. (run, epoch "
                                        "and val metrics recorded; each loads in `embed`); 0: off."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many optimiser steps and write nothing (timing)."),
    trust_checkpoint: bool = trust_checkpoint_option(),
    seed: int = seed_option(),
    device: str = device_option(),
    force: bool = force_option(),
    strict_geometry: bool = strict_geometry_option(),
):
    """Fine-tune an encoder: classify, regress, segment.

    Reads the manifest's images (modalities stacked as channels, cropped around --mask as
    `embed` does), trains the paper's head on the encoder with AdamW (cosine schedule after
    a linear warm-up) on the `train` split, keeps the epoch with the best validation metric
    (QWK, MSE or mean Dice) and reports it on the `test` split.

    \b
    Heads: classify  Linear(d,256)-BatchNorm1d-ReLU-Linear, cross-entropy, QWK
           regress   BatchNorm1d-Linear on the standardised target, MSE
           segment   UPerNet over the four stage outputs, Dice loss, mean Dice

    Writes OUTPUT, a radlens checkpoint holding the fine-tuned encoder (architecture and
    preprocessing recorded) plus the head, task, classes, target scaling and metrics.
    An interrupted run resumes from OUTPUT.state. Multi-GPU: launch it with torchrun.
    --save-every K also writes the encoder as it is after every K-th epoch (OUTPUT-epoch003.pt
    for epoch 3; not the best-on-val weights), each written atomically, recording the run,
    epoch and validation metrics: the checkpoints of a trajectory for embed/decode/compare.

    Examples:

    \b
      radlens finetune cohort.csv --modalities t2,dwi,adc --mask gland --encoder profound.pt \\
          --task classify --target pirads --metrics cls.csv -o ft_cls.pt
      radlens finetune cohort.csv --modalities t2 --mask gland --encoder profound.pt \\
          --task regress --target volume_ml --freeze-encoder -o pre_reg.pt
      radlens finetune cohort.csv --modalities t2,dwi,adc --mask gland --encoder profound.pt \\
          --task regress --target volume_ml --epochs 30 --save-every 10 -o ft.pt
      torchrun --nproc_per_node=4 -m radlens_cli finetune cohort.csv --modalities t2,dwi,adc \\
          --mask gland --encoder profound.pt --task segment --seg-mask lesion -o ft_seg.pt
    """

    finetune(
        manifest, parse_list(modalities, "modalities"), mask, encoder, task, output,
        target=target, seg_mask=seg_mask, metrics=metrics, epochs=epochs, lr=lr, batch_size=batch_size,
        weight_decay=weight_decay, warmup_epochs=warmup_epochs, freeze_encoder=freeze_encoder,
        balanced=balanced, augment=augment, seed=seed, device=device,
        spacing=parse_triple(spacing, "--spacing") if spacing else None,
        crop=parse_triple(crop, "--crop", int) if crop else None,
        norm=norm, cache_dir=cache_dir, workers=workers if workers is not None else workers_alias, resume=resume,
        force=force, max_steps=max_steps, seg_channels=seg_channels, drop_path=drop_path,
        strict_geometry=strict_geometry, trust_checkpoint=trust_checkpoint,
        conventions={"orient": orient, "layout": layout, "norm_region": norm_region}, save_every=save_every,
    )
