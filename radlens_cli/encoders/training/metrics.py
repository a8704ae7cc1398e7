"""Metrics of finetune: per-case records, QWK / MSE / Dice, the metrics CSV."""

from __future__ import annotations

import numpy as np
import torch

from radlens_cli.encoders.tasks import TASKS
from radlens_cli.io.formats import write_csv


def case_records(task: str, out: torch.Tensor, target: torch.Tensor) -> dict:
    """Per-case numbers a metric needs, left on the device (no sync per step)."""
    return TASKS[task].records(out.detach(), target.detach())


def records_to_numpy(recs: list[dict]) -> list[dict]:
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
    return TASKS[task].metrics(cat, n_classes, scale)


def metric_columns(task: str) -> list[str]:
    return list(TASKS[task].columns)


def write_metrics_csv(path: str, history: list[dict], task: str, force: bool = False) -> None:
    """One row per (epoch, split): epoch, split, n_cases, loss, the task's metrics, lr."""
    import pandas as pd

    cols = ["epoch", "split", "n_cases", "loss"] + metric_columns(task) + ["lr"]
    frame = pd.DataFrame([{c: r.get(c, float("nan")) for c in cols} for r in history], columns=cols)
    write_csv(frame, path, force, float_format="%.8g")


def json_ready(obj):
    """History rows with plain floats (NaN kept) for the checkpoint and CSV."""
    return [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()} for r in obj]
