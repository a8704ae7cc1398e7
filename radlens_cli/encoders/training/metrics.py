"""Metrics of finetune: per-case records, QWK / MSE / Dice, the metrics CSV."""

from __future__ import annotations

import numpy as np
import torch

from radlens_cli.encoders.heads import quadratic_weighted_kappa


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


def _json_ready(obj):
    """History rows with plain floats (NaN kept) for the checkpoint and CSV."""
    return [{k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in r.items()} for r in obj]
