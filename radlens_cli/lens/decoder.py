"""Closed-form linear radiomic decoding on the frozen share space (paper Sect. 2.3).

The paper solves R = theta Z, theta = R Z^T (Z Z^T)^-1: a linear map WITHOUT intercept.
radlens follows the paper by default; `intercept=True` (CLI `--intercept`) adds a bias
column (R ~ theta [Z; 1], docs/lens.md); importance never includes the bias.
With rows as cases (Z: n x h, R: n x p) that is theta^T = (Z^T Z + a I)^-1 Z^T R: the
paper's normal equations, solved through the symmetric eigendecomposition of the h x h
Gram matrix -- never an explicit inverse -- with eigenvalues below
eps * max(n, h) * largest treated as zero when a = 0 (the minimum-norm least-squares
solution on the numerical null space). The Gram route costs one n*h*h and one n*h*p
product, a fraction of an SVD of Z at 19,000 cases, and it is the same solver compare
uses for its refits from updated Gram matrices. It squares the condition number, which
is why decode reports it and warns above 1e6 (suggesting --ridge).
With an intercept the ridge penalty does not touch the bias: the moments are centred
on the train means first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.lens.power import ridge_dof as power_ridge_dof

from radlens_cli.errors import ParameterMessage

def _small_blas():
    """One BLAS thread for h x h work (Gram, eigh): it gains nothing from threads, and
    multi-threaded OpenBLAS on a busy machine spins -- eigh of 256 x 256 measured 1.6 s
    with 2 threads vs 0.01 s with 1 on the shared 2-core box."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


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


def ridge_dof(eigvals, alpha: float, intercept: bool = False) -> float:
    """Effective degrees of freedom sum_k w_k / (w_k + alpha) (+1 intercept); the rank at alpha 0."""
    return power_ridge_dof(eigvals, alpha, intercept)


def conditioning(eigvals: np.ndarray, n: int, h: int) -> dict:
    """Diagnostics of the design Z_train from the eigenvalues of its Gram matrix."""
    w = np.clip(np.asarray(eigvals, dtype=np.float64), 0.0, None)
    wmax = float(w.max()) if w.size else 0.0
    tol = wmax * np.finfo(np.float64).eps * max(n, h)
    rank = int((w > tol).sum())
    wmin = float(w.min()) if w.size else 0.0
    cond = float(np.sqrt(wmax / wmin)) if wmin > tol else float("inf")
    return {"n_train": int(n), "hidden": int(h), "effective_rank": rank,
            "condition_number": cond, "singular_max": float(np.sqrt(wmax)),
            "singular_min": float(np.sqrt(wmin))}


def _center(G, C, n, zsum, rsum):
    zm, rm = zsum / n, rsum / n
    return G - n * np.outer(zm, zm), C - n * np.outer(zm, rm), zm, rm


def _solve_eigh(w, V, C, n, ridge):
    if ridge > 0:
        inv = 1.0 / (w + ridge)
    else:
        tol = max(float(w.max()), 0.0) * np.finfo(np.float64).eps * max(n, len(w))
        inv = np.where(w > tol, 1.0 / np.where(w > tol, w, 1.0), 0.0)
    return ((V * inv) @ (V.T @ C)).T


def _moments_eigh(Z, R, intercept: bool):
    """(Z, R as float64, n, h, cross C, zm, rm, eigenvalues w, eigenvectors V) of the
    (centred, with an intercept) Gram matrix: what fit_decoder and ridge_gcv both solve from,
    without centred copies of the (possibly large) matrices. zm, rm are None without intercept."""
    Z = np.asarray(Z, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    n, h = Z.shape
    with _small_blas():
        G = Z.T @ Z
    C = Z.T @ R
    zm = rm = None
    if intercept:
        G, C, zm, rm = _center(G, C, n, Z.sum(axis=0), R.sum(axis=0))
    with _small_blas():
        w, V = np.linalg.eigh(G)
    return Z, R, n, h, C, zm, rm, w, V


def solve_moments(G, C, n, zsum, rsum, intercept: bool, ridge: float):
    """theta (p, h) and bias (p,) from Gram G = sum z z^T and cross C = sum z r^T (h, p)."""
    if intercept:
        G, C, zm, rm = _center(G, C, n, zsum, rsum)
    with _small_blas():
        w, V = np.linalg.eigh(G)
    theta = _solve_eigh(w, V, C, n, ridge)
    bias = (rm - theta @ zm) if intercept else np.zeros(C.shape[1])
    return theta, bias


def fit_decoder(Z: np.ndarray, R: np.ndarray, ridge: float = 0.0,
                intercept: bool = False) -> Decoder:
    """Least-squares (ridge) decoder R ~ Z theta^T (+ bias), fitted on train rows."""
    Z, R, n, h, C, zm, rm, w, V = _moments_eigh(Z, R, intercept)
    diag = conditioning(w, n, h)
    warnings = []
    n_params = h + (1 if intercept else 0)
    if n < 5 * n_params and ridge == 0:
        warnings.append(f"n_train={n} < 5*h={5 * n_params}: least-squares weights are "
                        f"noisy here; prefer delta_r2 over delta_importance")
    if ridge == 0 and (not np.isfinite(diag["condition_number"])
                       or diag["condition_number"] > COND_WARN):
        warnings.append(ParameterMessage(f"Z_train is ill-conditioned (condition number "
                                         f"{diag['condition_number']:.3g}, effective rank "
                                         f"{diag['effective_rank']}/{h}); consider {{ridge}}", "ridge"))
    alpha = float(ridge)
    if alpha == 0.0 and n_params >= n:
        alpha = RIDGE_FALLBACK * float(np.clip(w, 0, None).mean()) if w.size else 1.0
        alpha = alpha if alpha > 0 else 1.0
        warnings.append(f"h={n_params} >= n_train={n}: least squares is under-determined; "
                        f"falling back to ridge {alpha:.4g}")
    theta = _solve_eigh(w, V, C, n, alpha)            # (p, h)
    bias = (rm - theta @ zm) if intercept else np.zeros(R.shape[1])
    diag["ridge_used"] = alpha
    diag["dof"] = ridge_dof(w, alpha, intercept)      # what lens.power weighs against n_train
    return Decoder(theta=theta, bias=bias, intercept=intercept, ridge=alpha,
                   diagnostics=diag, warnings=warnings)


RIDGE_GRID = tuple(10.0 ** np.arange(-6.0, 1.5, 0.5))   # x the mean eigenvalue of Z^T Z


def choose_ridge(Z: np.ndarray, R: np.ndarray, intercept: bool = True,
                 grid=RIDGE_GRID) -> tuple[float, np.ndarray]:
    """Ridge alpha by generalised cross-validation (Golub, Heath & Wahba 1979) on train rows.

    alpha = g * mean eigenvalue of the (centred) Gram matrix for g in `grid`; the score of
    an alpha is the mean over columns of GCV_j / var_j (columns weigh equally whatever
    their scale), GCV_j = (RSS_j / n) / (1 - df / n)^2 with df = sum_k w_k / (w_k + alpha)
    (+1 for the intercept). In the eigenbasis of Z^T Z = V diag(w) V^T, with
    B = diag(w)^-1/2 V^T Z^T R, RSS_j(alpha) = ||r_j||^2 - ||B_j||^2
    + sum_k (alpha / (w_k + alpha))^2 B_kj^2: one n*h*p product for the whole grid.
    Returns (alpha, scores per grid point)."""
    alpha, scores, _ = ridge_gcv(Z, R, intercept, grid)
    return alpha, scores


def ridge_gcv(Z: np.ndarray, R: np.ndarray, intercept: bool = True, grid=RIDGE_GRID):
    """`choose_ridge` and the decoder at the chosen alpha from the same moments:
    (alpha, scores, Decoder). The centred moments come from Z^T Z and Z^T R without
    centred copies of the (possibly large) matrices."""
    Z, R, n, h, C, zm, rm, w, V = _moments_eigh(Z, R, intercept)
    rr = np.einsum("ij,ij->j", R, R)
    if intercept:
        rr = rr - n * rm * rm
    w = np.clip(w, 0.0, None)
    pos = w > max(float(w.max()), 0.0) * np.finfo(np.float64).eps * max(n, len(w))
    scale = float(w.mean()) if w.size and w.mean() > 0 else 1.0
    VC = V.T @ C                                                    # (h, p)
    B2 = (VC[pos] ** 2) / w[pos, None]
    base = rr - B2.sum(axis=0)
    var = rr / n
    var = np.where(var > 0, var, 1.0)
    alphas = np.array([g * scale for g in grid])
    scores = np.zeros(len(alphas))
    for i, a in enumerate(alphas):
        shrink = a / (w[pos] + a)
        rss = np.clip(base + (shrink ** 2) @ B2, 0.0, None)
        df = float((1.0 - shrink).sum()) + (1.0 if intercept else 0.0)
        denom = max(1.0 - df / n, 1e-12) ** 2
        scores[i] = float(np.mean(rss / n / denom / var))
    alpha = float(alphas[int(np.argmin(scores))])
    theta = ((V / (w + alpha)) @ VC).T                              # (p, h)
    bias = (rm - theta @ zm) if intercept else np.zeros(R.shape[1])
    diag = conditioning(w, n, h)
    diag["ridge_used"] = alpha
    diag["dof"] = ridge_dof(w, alpha, intercept)      # what lens.power weighs against n_train
    return alpha, scores, Decoder(theta=theta, bias=bias, intercept=intercept, ridge=alpha,
                                  diagnostics=diag)


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
