"""The fine-tuning tasks, one entry each: head, loss, per-case records, metrics, CSV columns.

A new task is one more `Task` in TASKS (its head class and loss live in heads.py); the
training loop, the metrics CSV, the checkpoint and `load_finetuned` read everything from
here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from radlens_cli.encoders.heads import (ClassifyHead, RegressHead, UPerNetHead, dice_loss, dice_scores_torch,
                                        quadratic_weighted_kappa)


@dataclass(frozen=True)
class Task:
    """What one task trains and reports.

    head(dims, n_classes, **kw): the head on an encoder with stage widths `dims`;
    loss(out, target); records(out, target): per-case numbers a metric needs (tensors,
    left on the device); metrics(records, n_classes, scale): the task's metrics from the
    concatenated numpy records; metric: the one that picks the best epoch; columns: the
    metric columns of the metrics CSV, in order.
    """

    name: str
    head_class: type
    head: Callable
    loss: Callable
    records: Callable
    metrics: Callable
    metric: str
    higher_is_better: bool
    columns: tuple


def _classify_metrics(cat: dict, n_classes: int, scale) -> dict:
    return {"qwk": quadratic_weighted_kappa(cat["true"], cat["pred"], labels=np.arange(n_classes))}


def _regress_metrics(cat: dict, n_classes: int, scale) -> dict:
    mse_std = float(np.mean((cat["pred"] - cat["true"]) ** 2))
    return {"mse": mse_std * float(scale[1]) ** 2, "mse_std": mse_std}


def _segment_metrics(cat: dict, n_classes: int, scale) -> dict:
    return {"dice": float(np.mean(cat["dice"]))}


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("classify", ClassifyHead,
         head=lambda dims, n_classes, **kw: ClassifyHead(dims[-1], n_classes, **kw),
         loss=lambda out, target: F.cross_entropy(out, target.long()),
         records=lambda out, target: {"pred": out.argmax(1), "true": target.long()},
         metrics=_classify_metrics, metric="qwk", higher_is_better=True, columns=("qwk",)),
    Task("regress", RegressHead,
         head=lambda dims, n_classes, **kw: RegressHead(dims[-1], **kw),
         loss=lambda out, target: F.mse_loss(out, target.float()),
         records=lambda out, target: {"pred": out.double(), "true": target.double()},
         metrics=_regress_metrics, metric="mse", higher_is_better=False, columns=("mse", "mse_std")),
    Task("segment", UPerNetHead,
         head=lambda dims, n_classes, **kw: UPerNetHead(dims, n_classes=1, **kw),
         loss=dice_loss,
         records=lambda out, target: {"dice": dice_scores_torch(out, target)},
         metrics=_segment_metrics, metric="dice", higher_is_better=True, columns=("dice",)),
)}
METRIC_NAME = {t.name: t.metric for t in TASKS.values()}
HIGHER_IS_BETTER = {t.metric: t.higher_is_better for t in TASKS.values()}


def task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}")
    return TASKS[name]


def build_head(task_name: str, encoder: torch.nn.Module, n_classes: int = 1, **kw) -> torch.nn.Module:
    """The paper's head for `task_name` on top of `encoder` (which has `dims`)."""
    return task(task_name).head(list(encoder.dims), n_classes, **kw)


def head_config(head, n_classes: int, in_dims, head_kwargs: dict) -> dict:
    """How to rebuild `head` (what a finetune checkpoint records and head_from_config reads)."""
    return {"type": type(head).__name__, "n_classes": n_classes, "in_dims": list(in_dims), **head_kwargs}


def head_from_config(config: dict) -> torch.nn.Module:
    """The head a `head_config` describes (untrained)."""
    hc = dict(config)
    kind, n_classes, in_dims = hc.pop("type"), hc.pop("n_classes"), hc.pop("in_dims")
    spec = next((t for t in TASKS.values() if t.head_class.__name__ == kind), TASKS["segment"])
    return spec.head(list(in_dims), n_classes, **hc)


def task_loss(task_name: str, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return task(task_name).loss(out.float(), target)


def better(metric: str, new: float, best: float | None) -> bool:
    """Whether `new` improves on `best` (NaN never does; anything beats no best)."""
    if new is None or not np.isfinite(new):
        return False
    if best is None or not np.isfinite(best):
        return True
    return new > best if HIGHER_IS_BETTER[metric] else new < best
