"""Benjamini–Hochberg FDR shared by compare, stats and correlate."""

from __future__ import annotations

import numpy as np


def bh_fdr(p) -> np.ndarray:
    """BH-adjusted q-values, equal to scipy.stats.false_discovery_control(p, method='bh').

    NaN p-values stay NaN and do not count towards the number of tests. Works on any
    shape (the adjustment is over all finite entries).
    """
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.isfinite(flat)
    m = int(ok.sum())
    if m == 0:
        return out
    pv = flat[ok]
    order = np.argsort(pv, kind="mergesort")
    ranked = pv[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.clip(q_sorted, 0.0, 1.0)
    res = out.ravel()
    res[ok] = q
    return res.reshape(p.shape)


def stars(p) -> np.ndarray:
    """'***' p<0.001, '**' p<0.01, '*' p<0.05, '' otherwise (NaN -> '')."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, "", dtype=object)
    with np.errstate(invalid="ignore"):
        out[p < 0.05] = "*"
        out[p < 0.01] = "**"
        out[p < 0.001] = "***"
    return out
