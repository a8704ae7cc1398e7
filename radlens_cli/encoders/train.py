"""Fine-tuning loop of `radlens finetune`: the paper's heads on an encoder, AdamW, cosine LR.

Note for benchmarks/encoders.py: `train_step_throughput(model, head, batch, steps,
device, amp)` times the model-only train step (forward, loss, backward, AdamW step on a
fixed batch); `finetune(..., max_steps=N)` runs the real end-to-end loop (manifest,
preprocessing, loader, augmentation, train steps) and stops after N optimiser steps;
its result dict holds `train_seconds`, `train_steps` and `train_volumes` so end-to-end
volumes/s = train_volumes / train_seconds (timed from the first batch request to the
last step; the one preprocessing pass before training is not in it).
`finetune(..., timing_warmup_steps=K)` starts that clock after K steps (CUDA synchronised)
so kernel autotuning and DataLoader start-up stay out of train_seconds/train_volumes
(train_steps still counts every step).

Determinism and resume: the batch order and the augmentation of each batch depend only
on (seed, epoch, step), and the global torch RNG (drop-path) is reseeded from
(seed, epoch, rank) at each epoch start, so a run resumed from `<output>.state` (the
last finished epoch: model, head, optimiser, scheduler, RNG states, best weights and
metric, metric history; written atomically by rank 0 after every epoch) ends with the
same weights on CPU as an uninterrupted one. The state file is removed on success.

`RADLENS_FINETUNE_KILL_AT_STEP=N` (tests only) sends SIGKILL to the process just before
global optimiser step N, to test resuming after `kill -9`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from radlens_cli import log
from radlens_cli.encoders import ddp
from radlens_cli.encoders.heads import (HIGHER_IS_BETTER, METRIC_NAME, TaskModel, better, build_head,
                                        quadratic_weighted_kappa, task_loss)
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.pool import loader_death, test_kill_hook

STATE_VERSION = 1


@dataclass
class TrainConfig:
    """Optimisation settings (the paper: AdamW, lr 1e-3, 100 epochs)."""

    task: str
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 2
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    freeze_encoder: bool = False
    balanced: bool = False
    augment: bool = True
    seed: int = 0
    amp: bool = True
    max_steps: int | None = None
    timing_warmup_steps: int = 0
    num_workers: int = 0
    head_kwargs: dict = field(default_factory=dict)

    def check(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1 (got {self.epochs})")
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive (got {self.lr})")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if self.weight_decay < 0:
            raise UsageError(f"--weight-decay must be >= 0 (got {self.weight_decay})")
        if self.warmup_epochs < 0:
            raise UsageError(f"--warmup-epochs must be >= 0 (got {self.warmup_epochs})")
        if self.balanced and self.task != "classify":
            raise UsageError("--balanced applies to --task classify only")


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up from 1/warmup to 1 over `warmup` steps, then cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    rest = max(1, total - warmup)
    t = min(1.0, (step - warmup) / rest)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def _mix(*ints: int) -> int:
    """A 63-bit seed from integers (stable across processes, unlike hash())."""
    h = hashlib.sha256(":".join(str(int(i)) for i in ints).encode()).digest()
    return int.from_bytes(h[:8], "big") & ((1 << 63) - 1)


def augment_batch(x: torch.Tensor, seg: torch.Tensor | None, seed: int):
    """Random flips along each spatial axis and per-channel intensity scale/shift.

    Per case: each of D, H, W flipped with probability 1/2 (the segmentation target with
    it); each channel multiplied by U(0.9, 1.1) and shifted by U(-0.1, 0.1) (volumes
    are normalised per channel, so these are in units of the channel's spread).
    Deterministic given `seed`; parameters are drawn on the CPU so every device agrees.
    """
    g = torch.Generator().manual_seed(seed)
    b, c = x.shape[:2]
    flips = torch.rand(b, 3, generator=g) < 0.5
    scale = 0.9 + 0.2 * torch.rand(b, c, generator=g)
    shift = -0.1 + 0.2 * torch.rand(b, c, generator=g)
    x = x * scale.to(x.device, x.dtype).view(b, c, 1, 1, 1) + shift.to(x.device, x.dtype).view(b, c, 1, 1, 1)
    xs, ss = [], []
    for i in range(b):
        dims = [d + 1 for d in range(3) if flips[i, d]]
        xs.append(x[i].flip(dims) if dims else x[i])
        if seg is not None:
            ss.append(seg[i].flip([d - 1 for d in dims]) if dims else seg[i])
    x = torch.stack(xs)
    if seg is not None:
        seg = torch.stack(ss)
    return x, seg


def collate(items: list[dict]) -> dict:
    """Stack volumes (B,C,D,H,W), targets (B,) and segmentation targets (B,D,H,W)."""
    out = {"case_id": [it["case_id"] for it in items],
           "index": torch.tensor([int(it.get("index", -1)) for it in items]),
           "volume": torch.stack([torch.as_tensor(it["volume"]).float() for it in items])}
    tgt = [it.get("target") for it in items]
    out["target"] = None if any(t is None for t in tgt) else torch.tensor([float(t) for t in tgt])
    seg = [it.get("seg") for it in items]
    out["seg"] = None if any(s is None for s in seg) else torch.stack([torch.as_tensor(s) for s in seg]).float()
    return out


class _Indexed(torch.utils.data.Dataset):
    """A subset of a dataset by index, which adds each item's position in the subset."""

    def __init__(self, base, indices):
        self.base = base
        self.indices = list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        item = dict(self.base[self.indices[i]])
        item["index"] = i
        if torch.utils.data.get_worker_info() is not None and "case_id" in item:
            test_kill_hook(str(item["case_id"]))  # test-only (RADLENS_TEST_KILL_WORKER)
        return item


def _case_ids_of(ds) -> list | None:
    """The case ids of a dataset or of a Subset of one (for messages)."""
    if hasattr(ds, "case_ids"):
        return list(ds.case_ids)
    base = _case_ids_of(getattr(ds, "dataset", None)) if hasattr(ds, "dataset") else None
    return [base[i] for i in ds.indices] if base is not None and hasattr(ds, "indices") else None


def _targets_of(batch: dict, task: str) -> torch.Tensor:
    if task == "segment":
        if batch["seg"] is None:
            raise RadlensError("segmentation targets missing from the dataset items")
        return batch["seg"]
    if batch["target"] is None:
        raise RadlensError("targets missing from the dataset items")
    return batch["target"]


def dice_scores_torch(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Hard Dice per case (prediction: logit > 0, i.e. sigmoid > 1/2); 1 where both are empty."""
    pred = (logits.reshape(target.shape) > 0).flatten(1)
    t = (target > 0.5).flatten(1)
    inter = (pred & t).sum(1).double()
    denom = (pred.sum(1) + t.sum(1)).double()
    return torch.where(denom > 0, 2.0 * inter / denom.clamp(min=1.0), torch.ones_like(denom))


def _records(task: str, out: torch.Tensor, target: torch.Tensor) -> dict:
    """Per-case numbers a metric needs, left on the device (no sync per step)."""
    out = out.detach()
    target = target.detach()
    if task == "classify":
        return {"pred": out.argmax(1), "true": target.long()}
    if task == "regress":
        return {"pred": out.double(), "true": target.double()}
    return {"dice": dice_scores_torch(out, target)}


def _to_numpy(recs: list[dict]) -> list[dict]:
    """Records as small numpy arrays (what DDP ranks all-gather)."""
    return [{k: v.cpu().numpy() for k, v in r.items()} for r in recs]


def compute_metrics(task: str, recs: list[dict], n_classes: int = 0, scale=(0.0, 1.0)) -> dict:
    """Metrics from concatenated per-case records.

    classify: qwk over class indices 0..n_classes-1; regress: mse in the target's
    original units and mse_std on the standardised scale; segment: mean hard Dice.
    """
    if not recs:
        return {}
    cat = {k: np.concatenate([r[k] for r in recs]) for k in recs[0]}
    if task == "classify":
        return {"qwk": quadratic_weighted_kappa(cat["true"], cat["pred"], labels=np.arange(n_classes))}
    if task == "regress":
        mse_std = float(np.mean((cat["pred"] - cat["true"]) ** 2))
        return {"mse": mse_std * float(scale[1]) ** 2, "mse_std": mse_std}
    return {"dice": float(np.mean(cat["dice"]))}


def _autocast(device: torch.device, amp: bool):
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
            y = _targets_of(batch, task).to(device, non_blocking=True)
            with _autocast(device, amp):
                out = model(x)
            loss_sum += task_loss(task, out, y).detach().double() * len(x)
            count += len(x)
            recs.append(_records(task, out, y))
    loss_sum, count = ddp.all_reduce_sum([float(loss_sum), float(count)], dist, device)
    gathered = [r for part in ddp.all_gather_objects(_to_numpy(recs), dist) for r in part]
    metrics = compute_metrics(task, gathered, n_classes, scale)
    return {"loss": loss_sum / max(count, 1.0), "n_cases": int(count), **metrics}


def _finite(v) -> bool:
    return v is not None and bool(np.isfinite(v))


def _save_atomic(obj, path: str) -> None:
    from radlens_cli.io.files import atomic_output

    with atomic_output(path, force=True, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def _cpu_state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _rng_state() -> dict:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(state: dict) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass


def load_state(path: str, fingerprint: str) -> dict | None:
    """The resume state at `path` if it belongs to this run (same fingerprint)."""
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a torn or foreign file
        raise RadlensError(f"cannot read resume state {path}: {str(e).splitlines()[0] if str(e) else e}; "
                           f"remove it or pass --no-resume") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise RadlensError(f"{path}: not a radlens finetune state file; remove it or pass --no-resume")
    if state.get("fingerprint") != fingerprint:
        raise RadlensError(f"{path}: resume state of a run with other inputs or settings; "
                           f"remove it or pass --no-resume to start over")
    return state


def run_training(encoder, task: str, datasets: dict, cfg: TrainConfig, device: torch.device,
                 dist: ddp.DistInfo = ddp.DistInfo(), n_classes: int = 1, scale=(0.0, 1.0),
                 class_of_train=None, state_path: str | None = None, fingerprint: str = "",
                 resume: bool = True, head=None, on_epoch=None) -> dict:
    """Train `encoder` + the task head; returns the best weights and the metric history.

    datasets: {"train": ds, "val": ds, "test": ds}; items are dicts with `volume`
    (C,D,H,W) and `target` (class index / standardised value) or `seg` (D,H,W).
    class_of_train: class index per training case (for --balanced).
    Result: encoder_state, head_state (best on val; last epoch without val cases),
    best_epoch, best_metric, history (rows for the metrics CSV, test row last),
    train_seconds, train_steps, train_volumes.
    on_epoch(epoch, model, val_row or None, history): called by rank 0 after each finished
    epoch, before the resume state is written (finetune --save-every).
    """
    cfg.check()
    metric = METRIC_NAME[task]
    torch.manual_seed(_mix(cfg.seed, -1))  # head initialisation
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
        _set_rng_state(state.get("rng", {}))
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
    loader = torch.utils.data.DataLoader(_Indexed(train_ds, range(n_train)), batch_sampler=batches,
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
        torch.manual_seed(_mix(cfg.seed, epoch, dist.rank))
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
                y = _targets_of(batch, task).to(device, non_blocking=True)
                if cfg.augment:
                    x, seg = augment_batch(x, y if task == "segment" else None, _mix(cfg.seed, epoch, i, dist.rank))
                    if task == "segment":
                        y = seg
                with _autocast(device, cfg.amp):
                    out = wrapped(x)
                loss = task_loss(task, out, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                loss_sum += loss.detach().double() * len(x)
                count += len(x)
                recs.append(_records(task, out, y))
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
            death = loader_death(e, loader, list(batches), delivered, _case_ids_of(train_ds))
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
        train_recs = [r for part in ddp.all_gather_objects(_to_numpy(recs), dist) for r in part]
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
            best_state = _cpu_state(model)
        if dist.is_main and on_epoch is not None:
            on_epoch(epoch + 1, model, vrow if has_val else None, history)
        if dist.is_main:
            shown = f"val {metric} {value:.4f}" if value is not None else "no val"
            log.info(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['loss']:.4f}, {shown}"
                     f"{' (best)' if best_epoch == epoch + 1 else ''}")
            if state_path:
                _save_atomic({"version": STATE_VERSION, "fingerprint": fingerprint, "epoch": epoch + 1,
                              "model": model.state_dict(), "optimizer": opt.state_dict(),
                              "scheduler": sched.state_dict(), "rng": _rng_state(),
                              "best_metric": best, "best_epoch": best_epoch, "best_state": best_state,
                              "best_loss": best_loss,
                              "history": history, "config": json.dumps(asdict(cfg), default=str)},
                             state_path)
        ddp.barrier(dist)
    if best_state is None or stopped:  # max_steps benchmarks: the weights as they are
        best_state, best_epoch = _cpu_state(model), best_epoch or 0
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


def train_step_throughput(model, head, batch: torch.Tensor, steps: int, device, amp: bool = True,
                          task: str = "classify", warmup: int = 2) -> float:
    """Volumes/s of the model-only train step on a fixed batch (no data loading).

    `model` is an encoder, `head` a head from `heads.build_head` (or None for the
    classify head); the loss uses random targets.
    """
    device = torch.device(device)
    if head is None:
        head = build_head(task, model, n_classes=4)
    tm = TaskModel(model, head, task).to(device).train()
    opt = torch.optim.AdamW([p for p in tm.parameters() if p.requires_grad], lr=1e-3)
    x = batch.to(device)
    b = x.shape[0]
    if task == "classify":
        y = torch.randint(0, 4, (b,), device=device)
    elif task == "regress":
        y = torch.randn(b, device=device)
    else:
        y = (torch.rand(b, *x.shape[2:], device=device) > 0.5).float()

    def one():
        with _autocast(device, amp):
            out = tm(x)
        loss = task_loss(task, out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed_throughput(one, b, steps, device, warmup)


def timed_throughput(step, volumes_per_step: int, steps: int, device, warmup: int = 2) -> float:
    """Volumes/s of `step()` repeated `steps` times after `warmup` untimed calls (CUDA synced)."""
    device = torch.device(device)
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * volumes_per_step / (time.perf_counter() - t0)


# ---- the whole command: manifest -> datasets -> training -> FT.pt ------------------------

def _json_ready(obj):
    """History rows with plain floats (NaN kept) for the checkpoint and CSV."""
    return [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()} for r in obj]


def _class_list(values: np.ndarray) -> list:
    classes = np.unique(values)
    if np.all(np.equal(np.mod(classes, 1), 0)):
        return [int(c) for c in classes]
    return [float(c) for c in classes]


class _SegFlag(torch.utils.data.Dataset):
    """Loads a case (filling the cache) and returns only whether its seg target is non-empty."""

    def __init__(self, ds, indices):
        self.ds, self.indices = ds, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        seg = self.ds[self.indices[i]]["seg"]
        return bool(seg.numel() and seg.any())


def _prepass(ds, dist: ddp.DistInfo, device, task: str, where: str, column: str | None,
             workers: int = 0) -> None:
    """Preprocess every case once (fills the cache, surfaces bad cases before training)."""
    from radlens_cli.encoders.preprocess import unwrap_worker_error

    mine = range(dist.rank, len(ds), dist.world_size)
    loader = torch.utils.data.DataLoader(_SegFlag(ds, mine), batch_size=None, num_workers=workers)
    nonempty = 0
    try:
        for flag in log.progress(loader, total=len(mine), desc=f"preprocess {where}", unit="case"):
            nonempty += int(flag)
    except RadlensError as e:
        raise RadlensError(unwrap_worker_error(e), e.exit_code) from None
    if task == "segment" and where == "train":
        (nonempty,) = ddp.all_reduce_sum([float(nonempty)], dist, device)
        if nonempty == 0:
            raise RadlensError(f"segmentation mask {column} is empty inside the crop box for every "
                               f"training case; nothing to learn (wrong column or labels?)")


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
    from radlens_cli.io.files import check_output

    if task not in METRIC_NAME:
        raise UsageError(f"--task must be classify, regress or segment (got {task!r})")
    cfg = TrainConfig(task=task, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                      warmup_epochs=warmup_epochs, freeze_encoder=freeze_encoder, balanced=balanced,
                      augment=augment, seed=seed, amp=amp, max_steps=max_steps, num_workers=workers,
                      timing_warmup_steps=timing_warmup_steps,
                      head_kwargs={"channels": int(seg_channels)} if task == "segment" else {})
    cfg.check()
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
    check_output(output, force)
    if save_every < 0:
        raise UsageError(f"--save-every must be 0 (off) or a number of epochs (got {save_every})")
    if save_every and not (resume and os.path.exists(f"{output}.state")):  # a resumed run rewrites its own
        for e in range(save_every, epochs + 1, save_every):
            check_output(epoch_checkpoint_path(output, e), force)
    if metrics is not None:
        if metrics == "-":
            raise UsageError("--metrics must be a file (stdout is not used by finetune)")
        check_output(metrics, force)

    dist = ddp.env_info()
    dev = ddp.resolve_device(device, dist)
    if workers is None:
        cfg.num_workers = workers = auto_workers(dev, dist)
    ddp.init(dist, dev)
    try:
        return _finetune(**locals())
    finally:
        ddp.shutdown(dist)


def _finetune(manifest, modalities, mask, encoder, task, output, target, seg_mask, metrics, epochs, lr,
              batch_size, weight_decay, warmup_epochs, freeze_encoder, balanced, augment, seed, device,
              spacing, crop, norm, cache_dir, workers, resume, force, max_steps, amp, seg_channels, drop_path,
              cfg, dist, dev, trust_checkpoint=False, conventions=None, save_every=0,
              **_) -> dict:
    import tempfile

    from radlens_cli import provenance
    from radlens_cli.encoders.checkpoints import load_encoder, save_radlens_checkpoint
    from radlens_cli.encoders.preprocess import CaseDataset
    from radlens_cli.io.manifest import parse_mask_spec, read_manifest

    man = read_manifest(manifest)
    seg_spec = parse_mask_spec(seg_mask) if seg_mask else None
    man.require_columns(modalities, "modality")
    mask_spec = parse_mask_spec(mask)
    man.require_columns([mask_spec.column], "mask")
    if seg_spec is not None:
        man.require_columns([seg_spec.column], "segmentation mask")

    enc, info = load_encoder(encoder, trust=trust_checkpoint)
    if info.get("source") in ("torchscript", "factory") or not hasattr(enc, "forward_features"):
        raise UsageError(f"--encoder {encoder}: finetune needs a built-in ConvNeXt-V2 checkpoint "
                         f"(got {info.get('source')}); its output must load in `radlens embed`")
    if int(info["in_chans"]) != len(modalities):
        raise UsageError(f"--encoder {encoder} takes {info['in_chans']} input channel(s) but "
                         f"--modalities lists {len(modalities)}")
    if not 0.0 <= drop_path < 1.0:
        raise UsageError(f"--drop-path must be in [0, 1) (got {drop_path})")
    set_drop_path(enc, drop_path)
    rec = info.get("preprocessing") or {}
    from radlens_cli.encoders.infer import preprocessing_config

    pcfg = preprocessing_config(modalities, mask_spec, spacing, crop, norm, rec, **(conventions or {}))

    split = man.split
    classes, scale, encoded, class_of_train = None, (0.0, 1.0), None, None
    n_classes = 1
    if task == "classify":
        y = man.target(target)
        classes = _class_list(y)
        if len(classes) < 2:
            raise RadlensError(f"{manifest}: target column {target} has a single class ({classes[0]}); "
                               f"classification needs at least two")
        encoded = np.searchsorted(np.asarray(classes, dtype=np.float64), y).astype(np.float64)
        n_classes = len(classes)
        absent = [c for c, k in zip(classes, range(n_classes)) if not np.any(encoded[split == "train"] == k)]
        if absent and dist.is_main:
            log.warn(f"class(es) {', '.join(map(str, absent))} of {target} have no training case")
        class_of_train = encoded[split == "train"].astype(np.int64)
    elif task == "regress":
        y = man.target(target)
        tr = y[split == "train"]
        if len(tr) == 0:
            raise RadlensError(f"{manifest}: no training cases (split column has no 'train' rows)")
        mean, std = float(tr.mean()), float(tr.std())
        if not np.isfinite(std) or std <= 0:
            raise RadlensError(f"{manifest}: target column {target} is constant on the train split; "
                               f"nothing to regress")
        scale = (mean, std)
        encoded = (y - mean) / std

    params = {"task": task, "target": target, "seg_mask": seg_mask, "modalities": list(modalities),
              "mask": mask, "epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay,
              "warmup_epochs": warmup_epochs, "freeze_encoder": freeze_encoder, "balanced": balanced,
              "augment": augment, "seed": seed, "preprocessing": pcfg.to_dict(), "world_size": dist.world_size,
              "amp": amp, "head_kwargs": cfg.head_kwargs, "drop_path": drop_path,
              "trust_checkpoint": trust_checkpoint, "checkpoint_fully_unpickled": info["trusted"]}
    fingerprint = hashlib.sha256(json.dumps(
        {**params, "manifest": provenance.sha256_file(manifest), "encoder": provenance.sha256_file(encoder)},
        sort_keys=True, default=str).encode()).hexdigest()

    tmp_cache = None
    if cache_dir is None:
        # Preprocess once per run, not once per epoch; rank 0's folder is shared on one node.
        tmp_cache = tempfile.TemporaryDirectory(prefix="radlens-finetune-cache-", ignore_cleanup_errors=True) if dist.is_main else None
        path = ddp.broadcast_object(tmp_cache.name if tmp_cache else None, dist)
        if not os.path.isdir(path):  # another node
            tmp_cache = tempfile.TemporaryDirectory(prefix="radlens-finetune-cache-", ignore_cleanup_errors=True)
            path = tmp_cache.name
        cache_dir = path
    try:
        full = CaseDataset(man, pcfg, cache_dir=cache_dir, targets=encoded, seg_mask=seg_spec,
                           strict_geometry=_.get("strict_geometry", False))
        datasets = {s: torch.utils.data.Subset(full, np.flatnonzero(split == s).tolist()) for s in ("train", "val", "test")}
        counts = {s: len(d) for s, d in datasets.items()}
        if dist.is_main:
            log.info(f"{task} on {counts['train']} train / {counts['val']} val / {counts['test']} test case(s); "
                     f"{info['arch']} on {dev}{f' x{dist.world_size} ranks' if dist.enabled else ''}"
                     f"{', encoder frozen' if freeze_encoder else ''}")
        for s in ("train", "val", "test"):
            _prepass(datasets[s], dist, dev, task, s, seg_mask, workers)
        ddp.barrier(dist)
        on_epoch = None
        if save_every and not max_steps:
            def on_epoch(epoch, model, vrow, hist):
                if epoch % save_every:
                    return
                path = epoch_checkpoint_path(output, epoch)
                head_config = {"type": type(model.head).__name__, "n_classes": n_classes,
                               "in_dims": list(enc.dims), **cfg.head_kwargs}
                extra = {"finetune": {
                    "task": task, "target": target if task != "segment" else seg_mask, "classes": classes,
                    "target_scaling": {"mean": scale[0], "std": scale[1]} if task == "regress" else None,
                    "head_config": head_config, "head_state": _cpu_state(model.head),
                    "metric": METRIC_NAME[task], "epoch": epoch, "run": fingerprint[:16],
                    "val": _json_ready([vrow])[0] if vrow is not None else None,
                    "metrics": _json_ready(list(hist)), "params": params, "intermediate": True,
                    "encoder_source": {"spec": encoder, "arch": info["arch"], "source": info["source"]},
                }, "provenance": provenance.build("finetune", inputs={"manifest": manifest, "encoder": encoder},
                                                  params={**params, "epoch": epoch})}
                save_radlens_checkpoint(path, model.encoder, info["arch"], int(info["in_chans"]), pcfg.to_dict(),
                                        extra=extra, force=True)
                log.info(f"wrote {path} (epoch {epoch})")
        result = run_training(enc, task, datasets, cfg, dev, dist, n_classes=n_classes, scale=scale,
                              class_of_train=class_of_train,
                              state_path=None if max_steps else f"{output}.state",
                              fingerprint=fingerprint, resume=resume, on_epoch=on_epoch)
        history = _json_ready(result["history"])
        head = result["head"]
        head_config = {"type": type(head).__name__, "n_classes": n_classes,
                       "in_dims": list(enc.dims), **cfg.head_kwargs}
        summary = {k: result[k] for k in ("best_epoch", "best_metric", "metric", "train_seconds",
                                          "train_steps", "train_volumes", "stopped_early")}
        summary["history"] = history
        summary["test"] = next((r for r in history if r["split"] == "test"), None)
        if dist.is_main and not result["stopped_early"]:
            prov = provenance.build("finetune", inputs={"manifest": manifest, "encoder": encoder},
                                    params={**params, "case_inputs": full.case_inputs()})  # DICOM UIDs, segments
            enc.load_state_dict(result["encoder_state"])
            extra = {"finetune": {
                "task": task, "target": target if task != "segment" else seg_mask,
                "classes": classes, "target_scaling": {"mean": scale[0], "std": scale[1]} if task == "regress" else None,
                "head_config": head_config, "head_state": result["head_state"],
                "metric": result["metric"], "best_epoch": result["best_epoch"],
                "best_metric": result["best_metric"], "metrics": history, "params": params,
                "encoder_source": {"spec": encoder, "arch": info["arch"], "source": info["source"]},
            }, "provenance": prov}
            save_radlens_checkpoint(output, enc, info["arch"], int(info["in_chans"]), pcfg.to_dict(),
                                    extra=extra, force=force)
            if metrics is not None:
                write_metrics_csv(metrics, history, task, force)
            state = f"{output}.state"
            if os.path.exists(state):
                os.unlink(state)
            log.info(f"wrote {output} (best epoch {result['best_epoch']}, val {result['metric']} "
                     f"{result['best_metric'] if result['best_metric'] is not None else 'n/a'})")
        ddp.barrier(dist)
        return summary
    finally:
        if tmp_cache is not None:
            # A loader worker may still be writing a volume into it when a failed case stops
            # the run: a racing rmtree must not replace the case's one-line error.
            tmp_cache.cleanup()
            shutil.rmtree(tmp_cache.name, ignore_errors=True)


def epoch_checkpoint_path(output: str, epoch: int) -> str:
    """`ft.pt` -> `ft-epoch003.pt`: where finetune --save-every writes epoch 3's checkpoint."""
    stem, ext = os.path.splitext(output)
    return f"{stem}-epoch{epoch:03d}{ext or '.pt'}"


def metric_columns(task: str) -> list[str]:
    return {"classify": ["qwk"], "regress": ["mse", "mse_std"], "segment": ["dice"]}[task]


def write_metrics_csv(path: str, history: list[dict], task: str, force: bool = False) -> None:
    """One row per (epoch, split): epoch, split, n_cases, loss, the task's metrics, lr."""
    import pandas as pd

    from radlens_cli.io.files import atomic_output

    cols = ["epoch", "split", "n_cases", "loss"] + metric_columns(task) + ["lr"]
    frame = pd.DataFrame([{c: r.get(c, float("nan")) for c in cols} for r in history], columns=cols)
    with atomic_output(path, force, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, float_format="%.8g")


def load_finetuned(path: str, map_location="cpu"):
    """(encoder, head, meta) of a `radlens finetune` checkpoint; meta is its `finetune` dict."""
    from radlens_cli.encoders.checkpoints import load_encoder
    from radlens_cli.encoders.heads import ClassifyHead, RegressHead, UPerNetHead

    # one weights-only read: the head and task live beside the encoder in the same file
    enc, info = load_encoder(path, map_location=map_location)
    meta = info["extra"].get("finetune")
    if not meta:
        raise RadlensError(f"{path}: not a radlens finetune checkpoint (no head recorded)")
    hc = dict(meta["head_config"])
    kind = hc.pop("type")
    n_classes = hc.pop("n_classes")
    in_dims = hc.pop("in_dims")
    if kind == "ClassifyHead":
        head = ClassifyHead(in_dims[-1], n_classes, **hc)
    elif kind == "RegressHead":
        head = RegressHead(in_dims[-1], **hc)
    else:
        head = UPerNetHead(in_dims, n_classes=1, **hc)
    head.load_state_dict(meta["head_state"])
    return enc, head.eval(), meta
