"""Timing helpers for benchmarks/encoders.py.

`train_step_throughput(model, head, batch, steps, device, amp)` times the model-only train
step (forward, loss, backward, AdamW step on a fixed batch); `finetune(..., max_steps=N)`
(encoders/training/run.py, `radlens finetune`) runs the real end-to-end loop (manifest,
preprocessing, loader, augmentation, train steps) and stops after N optimiser steps;
its result dict holds `train_seconds`, `train_steps` and `train_volumes` so end-to-end
volumes/s = train_volumes / train_seconds (timed from the first batch request to the
last step; the one preprocessing pass before training is not in it).
`finetune(..., timing_warmup_steps=K)` starts that clock after K steps (CUDA synchronised)
so kernel autotuning and DataLoader start-up stay out of train_seconds/train_volumes
(train_steps still counts every step).
"""

from __future__ import annotations

import time

import torch

from radlens_cli.encoders.heads import TaskModel
from radlens_cli.encoders.tasks import build_head, task_loss
from radlens_cli.encoders.training.loop import autocast


def train_step_throughput(model, head, batch: torch.Tensor, steps: int, device, amp: bool = True,
                          task: str = "classify", warmup: int = 2) -> float:
    """Volumes/s of the model-only train step on a fixed batch (no data loading).

    `model` is an encoder, `head` a head from `tasks.build_head` (or None for the
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
        with autocast(device, amp):
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
