"""The training loop of finetune: run_training (epochs, validation, best weights, resume) and evaluate."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import asdict

import numpy as np
import torch

from radlens_cli import log
from radlens_cli.encoders import ddp
from radlens_cli.encoders.heads import TaskModel
from radlens_cli.encoders.tasks import HIGHER_IS_BETTER, METRIC_NAME, better, build_head, task_loss
from radlens_cli.encoders.training.augment import augment_batch
from radlens_cli.encoders.training.config import TrainConfig, lr_factor, mix_seed
from radlens_cli.encoders.training.data import IndexedSubset, case_ids_of, collate, targets_of
from radlens_cli.encoders.training.metrics import case_records, compute_metrics, records_to_numpy
from radlens_cli.encoders.training.resume import (STATE_VERSION, cpu_state, load_state, rng_state, save_atomic,
                                                  set_rng_state)
from radlens_cli.errors import RadlensError
from radlens_cli.workers import loader_death


def autocast(device: torch.device, amp: bool):
    # bf16 needs no loss scaling; CPU stays in float32 so tests are exact.
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=True) \
        if (amp and device.type == "cuda") else torch.autocast(device_type="cpu", enabled=False)


def evaluate(model, dataset, task: str, device, dist: ddp.DistInfo, batch_size: int, amp: bool,
             n_classes: int = 0, scale=(0.0, 1.0), num_workers: int = 0) -> dict:
    """Loss and metrics over `dataset` (sharded over ranks, gathered on all)."""
    n = len(dataset)
    if n == 0:
        return {}
    mine = list(range(dist.rank, n, dist.world_size))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, mine),
                                         batch_size=batch_size, shuffle=False, collate_fn=collate,
                                         num_workers=num_workers)
    model.eval()
    loss_sum, count, recs = torch.zeros((), dtype=torch.float64, device=device), 0, []
    with torch.no_grad():
        for batch in loader:
            x = batch["volume"].to(device, non_blocking=True)
            y = targets_of(batch, task).to(device, non_blocking=True)
            with autocast(device, amp):
                out = model(x)
            loss_sum += task_loss(task, out, y).detach().double() * len(x)
            count += len(x)
            recs.append(case_records(task, out, y))
    loss_sum, count = ddp.all_reduce_sum([float(loss_sum), float(count)], dist, device)
    gathered = [r for part in ddp.all_gather_objects(records_to_numpy(recs), dist) for r in part]
    metrics = compute_metrics(task, gathered, n_classes, scale)
    return {"loss": loss_sum / max(count, 1.0), "n_cases": int(count), **metrics}


def _finite(v) -> bool:
    return v is not None and bool(np.isfinite(v))


def run_training(encoder, task: str, datasets: dict, cfg: TrainConfig, device: torch.device,
                 dist: ddp.DistInfo = ddp.DistInfo(), n_classes: int = 1, scale=(0.0, 1.0),
                 class_of_train=None, state_path: str | None = None, fingerprint: str = "",
                 resume: bool = True, head=None, on_epoch=None) -> dict:
    """Train `encoder` + the task head; returns the best weights and the metric history.

    datasets: {"train": ds, "val": ds, "test": ds}; items are dicts with `volume`
    (C,D,H,W) and `target` (class index / standardised value) or `seg_target` (D,H,W).
    class_of_train: class index per training case (for --balanced).
    Result: encoder_state, head_state (best on val; last epoch without val cases),
    best_epoch, best_metric, history (rows for the metrics CSV, test row last),
    train_seconds, train_steps, train_volumes.
    on_epoch(epoch, model, val_row or None, history): called by rank 0 after each finished
    epoch, before the resume state is written (finetune --save-every).
    """
    cfg.check()
    metric = METRIC_NAME[task]
    torch.manual_seed(mix_seed(cfg.seed, -1))  # head initialisation
    head = head if head is not None else build_head(task, encoder, n_classes=n_classes, **cfg.head_kwargs)
    model = TaskModel(encoder, head, task, frozen_encoder=cfg.freeze_encoder).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]  # norms, biases, GRN: no weight decay
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)

    train_ds = datasets["train"]
    n_train = len(train_ds)
    if n_train == 0:
        raise RadlensError("no training cases (split column has no 'train' rows)")
    if task != "segment" and n_train < 2:
        raise RadlensError("need at least 2 training cases (the head's BatchNorm needs a batch of 2)")
    weights = None
    if cfg.balanced:
        cls = np.asarray(class_of_train, dtype=np.int64)
        counts = np.bincount(cls, minlength=n_classes).astype(np.float64)
        weights = 1.0 / counts[cls]
    batches = ddp.EpochBatches(n_train, cfg.batch_size, cfg.seed, dist, weights=weights,
                               drop_single=task != "segment")
    steps_per_epoch = max(1, len(batches))
    total = cfg.epochs * steps_per_epoch
    warm = min(cfg.warmup_epochs * steps_per_epoch, max(total - 1, 0))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warm))

    start_epoch, best, best_epoch, best_state, history = 0, None, 0, None, []
    best_loss = float("inf")
    state = load_state(state_path, fingerprint) if (state_path and resume) else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        set_rng_state(state.get("rng", {}))
        start_epoch = int(state["epoch"])
        best = state["best_metric"]
        best_loss = float(state.get("best_loss", float("inf")))
        best_epoch = int(state["best_epoch"])
        best_state = state["best_state"]
        history = list(state["history"])
        if dist.is_main:
            log.info(f"resuming from {state_path}: {start_epoch} of {cfg.epochs} epoch(s) done")
    del state

    wrapped = ddp.wrap(model, dist, device)
    loader = torch.utils.data.DataLoader(IndexedSubset(train_ds, range(n_train)), batch_sampler=batches,
                                         collate_fn=collate, num_workers=cfg.num_workers,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=cfg.num_workers > 0)
    kill_at = int(os.environ.get("RADLENS_FINETUNE_KILL_AT_STEP", "0") or 0)
    val_ds, test_ds = datasets.get("val"), datasets.get("test")
    has_val = val_ds is not None and len(val_ds) > 0
    if not has_val and dist.is_main:
        log.warn("no validation cases: keeping the last epoch's weights instead of the best on val")
    train_seconds, train_steps, train_volumes = 0.0, 0, 0
    step = start_epoch * steps_per_epoch
    stopped = False
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(mix_seed(cfg.seed, epoch, dist.rank))
        batches.set_epoch(epoch)
        wrapped.train()
        loss_sum, count, recs = torch.zeros((), dtype=torch.float64, device=device), 0, []
        t0 = time.perf_counter()
        delivered = 0
        try:
            for i, batch in enumerate(loader):
                delivered = i + 1
                if kill_at and step + 1 == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)
                x = batch["volume"].to(device, non_blocking=True)
                y = targets_of(batch, task).to(device, non_blocking=True)
                if cfg.augment:
                    x, seg_target = augment_batch(x, y if task == "segment" else None,
                                                  mix_seed(cfg.seed, epoch, i, dist.rank))
                    if task == "segment":
                        y = seg_target
                with autocast(device, cfg.amp):
                    out = wrapped(x)
                loss = task_loss(task, out, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += loss.detach().double() * len(x)
                count += len(x)
                recs.append(case_records(task, out, y))
                train_steps += 1
                train_volumes += len(x)
                if train_steps == cfg.timing_warmup_steps:  # restart the clock after the warm-up
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    t0, train_seconds, train_volumes = time.perf_counter(), 0.0, 0
                if cfg.max_steps is not None and train_steps >= cfg.max_steps:
                    stopped = True
                    break
        except RuntimeError as e:  # a loader worker killed (OOM, segfault): stop with the batch named
            death = loader_death(e, loader, list(batches), delivered, case_ids_of(train_ds))
            if death is None:
                raise
            how, ids = death
            saved = (f"rerun the same command to resume from {state_path}" if state_path and os.path.exists(state_path)
                     else "no epoch finished yet, a rerun starts over")
            raise RadlensError(f"a data loader worker {how} while reading training batch {delivered + 1} of "
                               f"epoch {epoch + 1} (cases {', '.join(ids) or 'unknown'}); {saved} "
                               f"(fewer -j workers use less memory)") from None
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_seconds += time.perf_counter() - t0
        if stopped:
            break
        ddp.sync_buffers(model, dist)
        loss_sum, count = ddp.all_reduce_sum([float(loss_sum), float(count)], dist, device)
        train_recs = [r for part in ddp.all_gather_objects(records_to_numpy(recs), dist) for r in part]
        lr_now = opt.param_groups[0]["lr"]
        row = {"epoch": epoch + 1, "split": "train", "n_cases": int(count), "loss": loss_sum / max(count, 1.0),
               **compute_metrics(task, train_recs, n_classes, scale), "lr": lr_now}
        history.append(row)
        if has_val:
            vrow = evaluate(model, val_ds, task, device, dist, cfg.batch_size, cfg.amp, n_classes, scale,
                            cfg.num_workers)
            history.append({"epoch": epoch + 1, "split": "val", **vrow, "lr": lr_now})
            value = vrow.get(metric)
            improved = better(metric, value, best)
            if not improved and not _finite(value) and not _finite(best):
                # metric undefined so far (e.g. QWK on a one-class val split): use val loss
                improved = vrow["loss"] < best_loss
        else:
            value, improved = None, True
        if improved or best_state is None:
            best, best_epoch = value, epoch + 1
            best_loss = vrow["loss"] if has_val else best_loss
            best_state = cpu_state(model)
        if dist.is_main and on_epoch is not None:
            on_epoch(epoch + 1, model, vrow if has_val else None, history)
        if dist.is_main:
            shown = f"val {metric} {value:.4f}" if value is not None else "no val"
            log.info(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['loss']:.4f}, {shown}"
                     f"{' (best)' if best_epoch == epoch + 1 else ''}")
            if state_path:
                save_atomic({"version": STATE_VERSION, "fingerprint": fingerprint, "epoch": epoch + 1,
                              "model": model.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "rng": rng_state(),
                              "best_metric": best, "best_epoch": best_epoch, "best_state": best_state,
                              "best_loss": best_loss,
                              "history": history, "config": json.dumps(asdict(cfg), default=str)},
                             state_path)
        ddp.barrier(dist)
    if best_state is None or stopped:  # max_steps benchmarks: the weights as they are
        best_state, best_epoch = cpu_state(model), best_epoch or 0
    model.load_state_dict(best_state)
    if test_ds is not None and len(test_ds) > 0 and not stopped:
        trow = evaluate(model, test_ds, task, device, dist, cfg.batch_size, cfg.amp, n_classes, scale,
                        cfg.num_workers)
        history.append({"epoch": best_epoch, "split": "test", **trow, "lr": float("nan")})
    enc_state = {k[len("encoder."):]: v for k, v in best_state.items() if k.startswith("encoder.")}
    head_state = {k[len("head."):]: v for k, v in best_state.items() if k.startswith("head.")}
    return {"encoder_state": enc_state, "head_state": head_state, "head": model.head, "model": model,
            "best_epoch": best_epoch, "best_metric": best, "metric": metric, "history": history,
            "higher_is_better": HIGHER_IS_BETTER[metric], "train_seconds": train_seconds,
            "train_steps": train_steps, "train_volumes": train_volumes, "stopped_early": stopped}


def set_drop_path(encoder, rate: float) -> None:
    """Stochastic depth rising linearly from 0 to `rate` over the blocks (ConvNeXt's rule)."""
    blocks = [m for m in encoder.modules() if hasattr(m, "drop_path") and isinstance(m.drop_path, float)]
    for i, b in enumerate(blocks):
        b.drop_path = rate * i / max(len(blocks) - 1, 1)


def auto_workers(device, dist: ddp.DistInfo) -> int:
    """DataLoader workers when not given: none on CPU (tests, determinism), some per GPU."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 2) // max(dist.world_size, 1) - 1))
