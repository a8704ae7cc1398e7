"""`radlens finetune`: fine-tune an encoder on a manifest task (the paper's Section 3.3).

The training itself is radlens_cli/encoders/training/ (loop, metrics, augmentation, resume).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (crop_option, device_option, force_option, layout_option, mask_option,
                                          modalities_option, norm_option, norm_region_option, orient_option,
                                          output_option, parse_triple, seed_option, spacing_option,
                                          strict_geometry_option, trust_checkpoint_option)
from radlens_cli.encoders.checkpoints import load_encoder, save_radlens_checkpoint
from radlens_cli.encoders.training.config import TrainConfig
from radlens_cli.encoders.training.finetuned import epoch_checkpoint_path, finetune_record
from radlens_cli.encoders.training.targets import encode_targets
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.manifest import parse_mask_spec, read_manifest
from radlens_cli.names import parse_list


def finetune(manifest: str, modalities: list[str], mask: str, encoder: str, task: str, output: str,
             target: str | None = None, seg_mask: str | None = None, metrics: str | None = None,
             epochs: int = 100, lr: float = 1e-3, batch_size: int = 2, weight_decay: float = 0.05,
             warmup_epochs: int = 5, freeze_encoder: bool = False, balanced: bool = False,
             augment: bool = True, seed: int = 0, device: str = "auto", spacing=None, crop=None,
             norm: str | None = None, cache_dir: str | None = None, workers: int | None = None,
             resume: bool = True, force: bool = False, max_steps: int | None = None,
             amp: bool = True, seg_channels: int = 128, drop_path: float = 0.0,
             timing_warmup_steps: int = 0, strict_geometry: bool = False, trust_checkpoint: bool = False,
             conventions: dict | None = None, save_every: int = 0) -> dict:
    """Fine-tune `encoder` on a manifest task and write a radlens checkpoint to `output`.

    Returns a summary: best_epoch, best_metric, metric, test metrics, history, timing.
    Only rank 0 writes files under torchrun.
    """
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders import ddp
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.preprocess import CaseDataset, preprocessing_config
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.tasks import METRIC_NAME, TASKS, head_config
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.training.data import SPLITS, prepass, split_datasets, training_cache
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.training.loop import auto_workers, run_training
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.training.metrics import json_ready, write_metrics_csv
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.training.resume import cpu_state

    if task not in TASKS:
        raise UsageError(f"--task must be classify, regress or segment (got {task!r})")
    cfg = TrainConfig(task=task, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                      warmup_epochs=warmup_epochs, freeze_encoder=freeze_encoder, balanced=balanced,
                      augment=augment, seed=seed, amp=amp, max_steps=max_steps, num_workers=workers,
                      timing_warmup_steps=timing_warmup_steps,
                      head_kwargs={"channels": int(seg_channels)} if task == "segment" else {})
    cfg.check()
    _check_outputs(task, target, seg_mask, output, metrics, force, save_every, epochs, resume)

    dist = ddp.env_info()
    dev = ddp.resolve_device(device, dist)
    if workers is None:
        cfg.num_workers = workers = auto_workers(dev, dist)
    ddp.init(dist, dev)
    try:
        # inputs: manifest columns, the encoder, preprocessing, targets
        man = read_manifest(manifest)
        seg_target = parse_mask_spec(seg_mask, "seg_mask") if seg_mask else None
        mask_spec = parse_mask_spec(mask)
        man.require_images(modalities, mask_spec)
        if seg_target is not None:
            man.require_columns([seg_target.column], "segmentation mask")
        backbone, info = _load_trainable_encoder(encoder, modalities, drop_path, trust_checkpoint)
        pcfg = preprocessing_config(modalities, mask_spec, spacing, crop, norm, info.preprocessing or {},
                                    warn=log.warn, **(conventions or {}))
        targets = encode_targets(man, task, target)
        if targets.absent and dist.is_main:
            log.warn(f"class(es) {', '.join(map(str, targets.absent))} of {target} have no training case")
        params = {"task": task, "target": target, "seg_mask": seg_mask, "modalities": list(modalities),
                  "mask": mask, "epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay,
                  "warmup_epochs": warmup_epochs, "freeze_encoder": freeze_encoder, "balanced": balanced,
                  "augment": augment, "seed": seed, "preprocessing": pcfg.to_dict(), "world_size": dist.world_size,
                  "amp": amp, "head_kwargs": cfg.head_kwargs, "drop_path": drop_path,
                  "trust_checkpoint": trust_checkpoint, "checkpoint_fully_unpickled": info.trusted}
        fingerprint = hashlib.sha256(json.dumps(
            {**params, "manifest": provenance.sha256_file(manifest), "encoder": provenance.sha256_file(encoder)},
            sort_keys=True, default=str).encode()).hexdigest()
        inputs = {"manifest": manifest, "encoder": encoder}
        provenance.declare("finetune", inputs=inputs, params=params)   # the --metrics CSV's sidecar
        encoder_source = {"spec": encoder, "arch": info.arch, "source": info.source}
        target_name = target if task != "segment" else seg_mask

        def write_checkpoint(path, model_encoder, record, prov_params, force):
            save_radlens_checkpoint(path, model_encoder, info.arch, int(info.in_chans), pcfg.to_dict(),
                                    extra={"finetune": record,
                                           "provenance": provenance.build("finetune", inputs=inputs,
                                                                          params=prov_params)},
                                    force=force)

        def save_epoch(epoch, model, vrow, hist):  # --save-every: the weights as they are after `epoch`
            if epoch % save_every:
                return
            path = epoch_checkpoint_path(output, epoch)
            record = finetune_record(
                task, target_name, targets,
                head_config(model.head, targets.n_classes, backbone.dims, cfg.head_kwargs),
                cpu_state(model.head), METRIC_NAME[task], json_ready(list(hist)), params, encoder_source,
                intermediate=True, epoch=epoch, run=fingerprint[:16],
                val=json_ready([vrow])[0] if vrow is not None else None)
            write_checkpoint(path, model.encoder, record, {**params, "epoch": epoch}, force=True)
            log.info(f"wrote {path} (epoch {epoch})")

        on_epoch = save_epoch if save_every and not max_steps else None

        # training
        with training_cache(cache_dir, dist) as cache:
            full = CaseDataset(man, pcfg, cache_dir=cache, targets=targets.encoded, seg_target=seg_target,
                               strict_geometry=strict_geometry)
            datasets = split_datasets(full, man.split)
            if dist.is_main:
                counts = {s: len(d) for s, d in datasets.items()}
                log.info(f"{task} on {counts['train']} train / {counts['val']} val / {counts['test']} test case(s); "
                         f"{info.arch} on {dev}{f' x{dist.world_size} ranks' if dist.enabled else ''}"
                         f"{', encoder frozen' if freeze_encoder else ''}")
            for s in SPLITS:
                prepass(datasets[s], dist, dev, task, s, seg_mask, workers)
            ddp.barrier(dist)
            result = run_training(backbone, task, datasets, cfg, dev, dist, n_classes=targets.n_classes,
                                  scale=targets.scale, class_of_train=targets.class_of_train,
                                  state_path=None if max_steps else f"{output}.state",
                                  fingerprint=fingerprint, resume=resume, on_epoch=on_epoch)
            history = json_ready(result["history"])

            # outputs: the checkpoint (best weights), the metrics CSV
            if dist.is_main and not result["stopped_early"]:
                backbone.load_state_dict(result["encoder_state"])
                record = finetune_record(
                    task, target_name, targets,
                    head_config(result["head"], targets.n_classes, backbone.dims, cfg.head_kwargs),
                    result["head_state"], result["metric"], history, params, encoder_source,
                    best_epoch=result["best_epoch"], best_metric=result["best_metric"])
                write_checkpoint(output, backbone, record, {**params, "case_inputs": full.case_inputs()},  # DICOM UIDs
                                 force=force)
                if metrics is not None:
                    write_metrics_csv(metrics, history, task, force)
                if os.path.exists(f"{output}.state"):
                    os.unlink(f"{output}.state")
                log.info(f"wrote {output} (best epoch {result['best_epoch']}, val {result['metric']} "
                         f"{result['best_metric'] if result['best_metric'] is not None else 'n/a'})")
            ddp.barrier(dist)
        summary = {k: result[k] for k in ("best_epoch", "best_metric", "metric", "train_seconds",
                                          "train_steps", "train_volumes", "stopped_early")}
        summary["history"] = history
        summary["test"] = next((r for r in history if r["split"] == "test"), None)
        return summary
    finally:
        ddp.shutdown(dist)


def _check_outputs(task, target, seg_mask, output, metrics, force, save_every, epochs, resume) -> None:
    """Option combinations and outputs, checked before anything is read."""
    if task == "segment":
        if not seg_mask:
            raise UsageError("--task segment needs --seg-mask COLUMN[:LABELS] (the target mask)")
        if target:
            raise UsageError("--target is for classify/regress; segment takes its target from --seg-mask")
    else:
        if not target:
            raise UsageError(f"--task {task} needs --target COLUMN (a numeric manifest column)")
        if seg_mask:
            raise UsageError("--seg-mask applies to --task segment only")
    if output == "-":
        raise UsageError("the fine-tuned checkpoint must be written to a file, not stdout")
    check_output(output, force, suffix=(".pt", ".pth"))
    if save_every < 0:
        raise UsageError(f"--save-every must be 0 (off) or a number of epochs (got {save_every})")
    if save_every and not (resume and os.path.exists(f"{output}.state")):  # a resumed run rewrites its own
        for e in range(save_every, epochs + 1, save_every):
            check_output(epoch_checkpoint_path(output, e), force)
    if metrics is not None:
        if metrics == "-":
            raise UsageError("--metrics must be a file (stdout is not used by finetune)")
        check_output(metrics, force, suffix=".csv")


def _load_trainable_encoder(encoder: str, modalities: list[str], drop_path: float, trust: bool):
    """(model, info) of a built-in ConvNeXt-V2 checkpoint taking one channel per modality."""
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.training.loop import set_drop_path

    backbone, info = load_encoder(encoder, trust=trust)
    if info.source in ("torchscript", "factory") or not hasattr(backbone, "forward_features"):
        raise UsageError(f"--encoder {encoder}: finetune needs a built-in ConvNeXt-V2 checkpoint "
                         f"(got {info.source}); its output must load in `radlens embed`")
    if int(info.in_chans) != len(modalities):
        raise UsageError(f"--encoder {encoder} takes {info.in_chans} input channel(s) but "
                         f"--modalities lists {len(modalities)}")
    if not 0.0 <= drop_path < 1.0:
        raise UsageError(f"--drop-path must be in [0, 1) (got {drop_path})")
    set_drop_path(backbone, drop_path)
    return backbone, info


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
