"""Closed-form linear radiomic decoding on the frozen share space (paper Sect. 2.3).

The paper solves R = theta Z, theta = R Z^T (Z Z^T)^-1: a linear map WITHOUT intercept.
radlens follows the paper by default; `intercept=True` (CLI `--intercept`) adds a bias
column as in DESIGN.md (R ~ theta [Z; 1]); importance never includes the bias.
With rows as cases (Z: n x h, R: n x p) the solution is theta = (Z^T Z + a I)^-1 Z^T R,
transposed to p x h. It is computed from the SVD of Z (what lstsq does) -- never an
explicit inverse -- with singular values below eps * max(n, h) * s_max treated as zero
when a = 0 (the minimum-norm least-squares solution). With an intercept the ridge
penalty does not touch the bias: Z and R are centred on their train means first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COND_WARN = 1e6        # condition number of Z_train above which decode warns
RIDGE_FALLBACK = 1e-3  # fallback ridge as a fraction of the mean squared singular value


@dataclass
class Decoder:
    """theta (p, h), bias (p,) (zeros without intercept) and the fit's diagnostics."""

    theta: np.ndarray
    bias: np.ndarray
    intercept: bool
    ridge: float
    diagnostics: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def predict(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z, dtype=np.float64) @ self.theta.T + self.bias

    @property
    def importance(self) -> np.ndarray:
        return importance(self.theta)


def importance(theta: np.ndarray) -> np.ndarray:
    """I_k = ||theta_k,:||_2 over hidden units (paper Sect. 3.6); theta has no bias column."""
    return np.sqrt(np.einsum("...kh,...kh->...k", theta, theta))


def conditioning(s: np.ndarray, n: int, h: int) -> dict:
    """Diagnostics from the singular values of the design Z_train."""
    s = np.asarray(s, dtype=np.float64)
    smax = float(s.max()) if s.size else 0.0
    tol = smax * np.finfo(np.float64).eps * max(n, h)
    rank = int((s > tol).sum())
    smin = float(s.min()) if s.size and len(s) == h else 0.0
    cond = smax / smin if smin > 0 else float("inf")
    return {"n_train": int(n), "hidden": int(h), "effective_rank": rank,
            "condition_number": cond, "singular_max": smax, "singular_min": smin}


def fit_decoder(Z: np.ndarray, R: np.ndarray, ridge: float = 0.0,
                intercept: bool = False) -> Decoder:
    """Least-squares (ridge) decoder R ~ Z theta^T (+ bias), fitted on train rows."""
    Z = np.asarray(Z, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    n, h = Z.shape
    if intercept:
        zm, rm = Z.mean(axis=0), R.mean(axis=0)
        Zc, Rc = Z - zm, R - rm
    else:
        Zc, Rc = Z, R
    U, s, Vt = np.linalg.svd(Zc, full_matrices=False)
    diag = conditioning(s, n, h)
    warnings = []
    n_params = h + (1 if intercept else 0)
    if n < 5 * n_params:
        warnings.append(f"n_train={n} < 5*h={5 * n_params}: least-squares weights are "
                        f"noisy here; prefer delta_r2 over delta_importance")
    if not np.isfinite(diag["condition_number"]) or diag["condition_number"] > COND_WARN:
        warnings.append(f"Z_train is ill-conditioned (condition number "
                        f"{diag['condition_number']:.3g}, effective rank "
                        f"{diag['effective_rank']}/{h}); consider --ridge")
    alpha = float(ridge)
    if alpha == 0.0 and n_params >= n:
        alpha = RIDGE_FALLBACK * float(np.mean(s ** 2)) if s.size else 1.0
        warnings.append(f"h={n_params} >= n_train={n}: least squares is under-determined; "
                        f"falling back to ridge {alpha:.4g}")
    if alpha > 0:
        filt = s / (s ** 2 + alpha)
    else:
        tol = (s.max() if s.size else 0.0) * np.finfo(np.float64).eps * max(n, h)
        filt = np.where(s > tol, 1.0 / np.where(s > tol, s, 1.0), 0.0)
    theta = ((Vt.T * filt) @ (U.T @ Rc)).T          # (p, h)
    bias = (rm - theta @ zm) if intercept else np.zeros(R.shape[1])
    diag["ridge_used"] = alpha
    return Decoder(theta=theta, bias=bias, intercept=intercept, ridge=alpha,
                   diagnostics=diag, warnings=warnings)


def r2_score(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-column R^2 = 1 - RSS/TSS around the column's mean on these cases.

    A column constant on these cases (TSS = 0) gets 1 when predicted exactly, else 0
    (scikit-learn's force_finite convention), so outputs hold no NaN.
    """
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    rss = ((target - pred) ** 2).sum(axis=0)
    tss = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    return _r2(rss, tss)


def _r2(rss, tss):
    rss, tss = np.asarray(rss, np.float64), np.asarray(tss, np.float64)
    out = np.where(rss == 0, 1.0, 0.0)
    ok = tss > 0
    np.divide(rss, tss, out=out, where=ok)
    return np.where(ok, 1.0 - out, out)
