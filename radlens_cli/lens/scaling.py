"""Radiomic feature scaling with train statistics (the paper: min-max to [0, 1]).

Columns that are constant or hold a non-finite value on the train split cannot be
scaled; they are dropped and listed with the reason, never turned into NaN.
Validation/test values outside [0, 1] are expected and kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import check_choice

SCALES = ("minmax", "zscore")


@dataclass
class Scaler:
    """Per-column affine map (r - offset) / factor, fitted on the train split."""

    kind: str
    columns: list[str]                       # kept columns, in order
    offset: np.ndarray
    factor: np.ndarray
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (column, reason)

    def transform(self, values: np.ndarray, out: bool = False) -> np.ndarray:
        """Scale a (n, len(columns)) array of the kept columns (in place with out=True,
        for a float64 array the caller owns: saves a copy of a large matrix)."""
        if out and isinstance(values, np.ndarray) and values.dtype == np.float64:
            values -= self.offset
            values /= self.factor
            return values
        return (np.asarray(values, dtype=np.float64) - self.offset) / self.factor


def fit_scaler(train_values: np.ndarray, columns, kind: str = "minmax") -> Scaler:
    """Fit `kind` scaling on train rows; constant / non-finite columns are dropped."""
    check_choice(kind, SCALES, "scale")
    v = np.asarray(train_values, dtype=np.float64)
    columns = [str(c) for c in columns]
    finite = np.isfinite(v).all(axis=0)
    with np.errstate(invalid="ignore"):
        vmin, vmax = v.min(axis=0), v.max(axis=0)
    # constant in float terms: the range is zero or below rounding of the values themselves
    const = finite & ~(vmax - vmin > 1e-12 * np.maximum(np.abs(vmax), np.abs(vmin)))
    dropped = []
    for j in np.flatnonzero(~finite | const):
        if not finite[j]:
            n_bad = int((~np.isfinite(v[:, j])).sum())
            dropped.append((columns[j], f"non-finite on train ({n_bad} case(s))"))
        else:
            dropped.append((columns[j], f"constant on train (value {vmin[j]:.6g})"))
    keep = finite & ~const
    vk = v[:, keep]
    if kind == "minmax":
        offset, factor = vmin[keep], (vmax - vmin)[keep]
    else:
        offset, factor = vk.mean(axis=0), vk.std(axis=0)
    return Scaler(kind=kind, columns=[c for c, k in zip(columns, keep) if k],
                  offset=offset, factor=factor, dropped=dropped)
