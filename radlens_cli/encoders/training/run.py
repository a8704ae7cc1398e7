"""`finetune`: fine-tune an encoder on a manifest task and write a radlens checkpoint (the
paper's Section 3.3); what `radlens finetune` runs. The epoch loop is loop.py; this module
reads the manifest, the encoder and the targets, checks the outputs, and writes the
checkpoints (best weights, save_every's) and the metrics CSV."""

from __future__ import annotations

import hashlib
import json
import os

from radlens_cli import log, provenance
from radlens_cli.encoders import ddp
from radlens_cli.encoders.checkpoints import load_encoder, save_radlens_checkpoint
from radlens_cli.encoders.preprocess import CaseDataset, preprocessing_config
from radlens_cli.encoders.tasks import METRIC_NAME, TASKS, head_config
from radlens_cli.encoders.training.config import TrainConfig
from radlens_cli.encoders.training.data import SPLITS, prepass, split_datasets, training_cache
from radlens_cli.encoders.training.finetuned import epoch_checkpoint_path, finetune_record
from radlens_cli.encoders.training.loop import auto_workers, run_training, set_drop_path
from radlens_cli.encoders.training.metrics import json_ready, write_metrics_csv
from radlens_cli.encoders.training.resume import cpu_state
from radlens_cli.encoders.training.targets import encode_targets
from radlens_cli.errors import ParameterError, UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.manifest import parse_mask_spec, read_manifest

SEGMENT = {"task": "task='segment'"}   # how a message names the segment task, from Python and the CLI
SEGMENT_FLAG = {"task": "--task segment"}


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

    if task not in TASKS:
        raise ParameterError(f"{{task}} must be classify, regress or segment (got {task!r})", "task")
    cfg = TrainConfig(task=task, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                      warmup_epochs=warmup_epochs, freeze_encoder=freeze_encoder, balanced=balanced,
                      augment=augment, seed=seed, amp=amp, max_steps=max_steps, num_workers=workers,
                      timing_warmup_steps=timing_warmup_steps,
                      head_kwargs={"channels": int(seg_channels)} if task == "segment" else {})
    cfg.check()
    check_outputs(task, target, seg_mask, output, metrics, force, save_every, epochs, resume)

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
        backbone, info = load_trainable_encoder(encoder, modalities, drop_path, trust_checkpoint)
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


def check_outputs(task, target, seg_mask, output, metrics, force, save_every, epochs, resume) -> None:
    """Option combinations and outputs, checked before anything is read."""
    if task == "segment":
        if not seg_mask:
            raise ParameterError("{task} needs {seg_mask} COLUMN[:LABELS] (the target mask)", "task", "seg_mask",
                                 plain=SEGMENT, flags=SEGMENT_FLAG)
        if target:
            raise ParameterError("{target} is for classify/regress; segment takes its target from {seg_mask}",
                                 "target", "seg_mask")
    else:
        if not target:
            raise ParameterError("{task} needs {target} COLUMN (a numeric manifest column)", "task", "target",
                                 plain={"task": f"task={task!r}"}, flags={"task": f"--task {task}"})
        if seg_mask:
            raise ParameterError("{seg_mask} applies to {task} only", "seg_mask", "task", plain=SEGMENT,
                                 flags=SEGMENT_FLAG)
    if output == "-":
        raise UsageError("the fine-tuned checkpoint must be written to a file, not stdout")
    check_output(output, force, suffix=(".pt", ".pth"))
    if save_every < 0:
        raise ParameterError(f"{{save_every}} must be 0 (off) or a number of epochs (got {save_every})", "save_every")
    if save_every and not (resume and os.path.exists(f"{output}.state")):  # a resumed run rewrites its own
        for e in range(save_every, epochs + 1, save_every):
            check_output(epoch_checkpoint_path(output, e), force)
    if metrics is not None:
        if metrics == "-":
            raise ParameterError("{metrics} must be a file (stdout is not used by finetune)", "metrics")
        check_output(metrics, force, suffix=".csv")


def load_trainable_encoder(encoder: str, modalities: list[str], drop_path: float, trust: bool):
    """(model, info) of a built-in ConvNeXt-V2 checkpoint taking one channel per modality."""

    backbone, info = load_encoder(encoder, trust=trust)
    if info.source in ("torchscript", "factory") or not hasattr(backbone, "forward_features"):
        raise ParameterError(f"{{encoder}} {encoder}: finetune needs a built-in ConvNeXt-V2 checkpoint "
                             f"(got {info.source}); its output must load in `radlens embed`", "encoder")
    if int(info.in_chans) != len(modalities):
        raise ParameterError(f"{{encoder}} {encoder} takes {info.in_chans} input channel(s) but "
                             f"{{modalities}} lists {len(modalities)}", "encoder", "modalities")
    if not 0.0 <= drop_path < 1.0:
        raise ParameterError(f"{{drop_path}} must be in [0, 1) (got {drop_path})", "drop_path")
    set_drop_path(backbone, drop_path)
    return backbone, info
