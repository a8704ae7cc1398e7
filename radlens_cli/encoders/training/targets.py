"""What finetune learns: a manifest's target column as class indices or a standardised value."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import RadlensError


@dataclass
class TaskTargets:
    """The encoded targets of a task (segment: none; its target is a mask, read per case).

    encoded: class index (classify) or (y - mean) / std (regress), one per manifest row;
    classes: the target's values in class-index order (classify); scale: (mean, std) of
    the training split (regress; (0, 1) otherwise); absent: classes with no training case.
    """

    n_classes: int = 1
    encoded: np.ndarray | None = None
    classes: list | None = None
    scale: tuple = (0.0, 1.0)
    class_of_train: np.ndarray | None = None
    absent: list = field(default_factory=list)

    def scaling(self, task: str) -> dict | None:
        """The target scaling a checkpoint records (regress only)."""
        return {"mean": self.scale[0], "std": self.scale[1]} if task == "regress" else None


def class_list(values: np.ndarray) -> list:
    """The distinct target values, ints when they all are."""
    classes = np.unique(values)
    if np.all(np.equal(np.mod(classes, 1), 0)):
        return [int(c) for c in classes]
    return [float(c) for c in classes]


def encode_targets(man, task: str, column: str | None) -> TaskTargets:
    """The targets of `task` from the manifest's numeric `column` (split `train` sets the scale)."""
    split = man.split
    if task == "classify":
        y = man.target(column)
        classes = class_list(y)
        if len(classes) < 2:
            raise RadlensError(f"{man.path}: target column {column} has a single class ({classes[0]}); "
                               f"classification needs at least two")
        encoded = np.searchsorted(np.asarray(classes, dtype=np.float64), y).astype(np.float64)
        n_classes = len(classes)
        absent = [c for c, k in zip(classes, range(n_classes)) if not np.any(encoded[split == "train"] == k)]
        return TaskTargets(n_classes=n_classes, encoded=encoded, classes=classes,
                           class_of_train=encoded[split == "train"].astype(np.int64), absent=absent)
    if task == "regress":
        y = man.target(column)
        tr = y[split == "train"]
        if len(tr) == 0:
            raise RadlensError(f"{man.path}: no training cases (split column has no 'train' rows)")
        mean, std = float(tr.mean()), float(tr.std())
        if not np.isfinite(std) or std <= 0:
            raise RadlensError(f"{man.path}: target column {column} is constant on the train split; "
                               f"nothing to regress")
        return TaskTargets(encoded=(y - mean) / std, scale=(mean, std))
    return TaskTargets()
