"""Centred kernel alignment (CKA) between two representations of the same cases.

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) with K, L the Gram matrices of the two
tables (Kornblith et al. 2019). Two estimators of HSIC:

* biased (Gretton et al. 2005): tr(K H L H) / (n-1)^2, H the centring matrix;
* debiased: the unbiased HSIC of Song et al. 2012, as used for CKA by Kornblith et al.
  and Nguyen et al. 2021 (computed by "U-centring" the Gram matrices), which removes
  the upward bias of CKA between unrelated high-dimensional tables at small n.

Kernels: linear (computed in feature space for both estimators, so memory stays linear
in cases) and rbf with the median heuristic of Kornblith et al.: bandwidth^2 =
sigma^2 * median of the squared distances (Gram matrices, n x n memory).
"""

from __future__ import annotations

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.io.tables import CaseTable, align_cases
from radlens_cli.log import progress

KERNELS = ("linear", "rbf")
GRAM_BOOTSTRAP_MAX = 4000  # bootstrap by indexing n x n Gram matrices up to this many cases
RBF_MAX_CASES = 12000  # rbf holds a few n x n float64 matrices (~1.2 GB each at this size)


def _centred(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0)


def gram(x, kernel: str = "linear", sigma: float = 1.0) -> np.ndarray:
    """n x n Gram matrix of the rows of x."""
    x = _centred(x)
    if kernel == "linear":
        return x @ x.T
    if kernel != "rbf":
        raise RadlensError(f"unknown kernel {kernel!r} (use {' or '.join(KERNELS)})")
    dots = x @ x.T
    sq = np.diag(dots)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * dots, 0.0)
    med = np.median(d2)
    if not med > 0:
        raise RadlensError("rbf kernel: median squared distance between cases is 0 (identical rows?)")
    return np.exp(-d2 / (2.0 * sigma**2 * med))


def center_gram(k: np.ndarray, unbiased: bool = False) -> np.ndarray:
    """H K H, or its U-centred version (zero diagonal) for the unbiased HSIC estimator."""
    k = np.array(k, dtype=np.float64)
    n = k.shape[0]
    if not unbiased:
        k -= k.mean(axis=0, keepdims=True)
        k -= k.mean(axis=1, keepdims=True)
        return k
    np.fill_diagonal(k, 0.0)
    means = k.sum(axis=0) / (n - 2)
    means -= means.sum() / (2.0 * (n - 1))
    k -= means[:, None]
    k -= means[None, :]
    np.fill_diagonal(k, 0.0)
    return k


def cka_from_grams(k: np.ndarray, l: np.ndarray, debiased: bool = False) -> float:
    """CKA of two n x n Gram matrices."""
    kc = center_gram(k, debiased)
    lc = center_gram(l, debiased)
    den = np.linalg.norm(kc) * np.linalg.norm(lc)
    if not den > 0:
        raise RadlensError("CKA undefined: a representation has no variance over the cases")
    return float(np.vdot(kc, lc) / den)


def _linear_hsic_terms(x: np.ndarray, y: np.ndarray, debiased: bool, n: int) -> float:
    """Scaled HSIC of the linear kernels of centred x, y without forming n x n matrices."""
    cross = x.T @ y if x.shape[1] <= y.shape[1] else (y.T @ x)
    tr_kl = float(np.vdot(cross, cross))  # tr(K L) = ||X'Y||_F^2
    if not debiased:
        return tr_kl  # centred inputs: tr(KHLH) = tr(KL)
    kx = np.einsum("ij,ij->i", x, x)
    ky = np.einsum("ij,ij->i", y, y)
    sx, sy = x.sum(axis=0), y.sum(axis=0)
    # K~ = K with a zero diagonal (Song et al. 2012)
    tr_t = tr_kl - float(kx @ ky)
    one_k1 = float(sx @ sx) - kx.sum()
    one_l1 = float(sy @ sy) - ky.sum()
    k1 = x @ sx - kx
    l1 = y @ sy - ky
    return tr_t + one_k1 * one_l1 / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(k1 @ l1)


def linear_cka(x, y, debiased: bool = False) -> float:
    """Linear CKA in feature space: O(n p q) time, memory linear in cases."""
    x, y = _centred(x), _centred(y)
    n = x.shape[0]
    hxy = _linear_hsic_terms(x, y, debiased, n)
    hxx = _linear_hsic_terms(x, x, debiased, n)
    hyy = _linear_hsic_terms(y, y, debiased, n)
    den = np.sqrt(hxx * hyy) if hxx > 0 and hyy > 0 else 0.0
    if not den > 0:
        raise RadlensError("CKA undefined: a representation has no variance over the cases")
    return float(hxy / den)


def cka(x, y, kernel: str = "linear", debiased: bool = False, sigma: float = 1.0) -> float:
    """CKA between tables x (n, p) and y (n, q) whose rows are the same cases."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise RadlensError(f"cka: {x.shape[0]} cases in one table but {y.shape[0]} in the other")
    n = x.shape[0]
    if n < (5 if debiased else 2):
        raise RadlensError(f"cka: {n} shared case(s); need at least {5 if debiased else 2}")
    if kernel not in KERNELS:
        raise RadlensError(f"unknown kernel {kernel!r} (use {' or '.join(KERNELS)})")
    if kernel == "linear":
        return linear_cka(x, y, debiased)
    if n > RBF_MAX_CASES:
        raise ParameterError(f"cka: the rbf kernel needs n x n matrices; {n} cases is over {RBF_MAX_CASES} "
                             f"(use {{kernel}}, or {{split}})", "kernel", "split", exit_code=EXIT_DATA,
                             plain={"kernel": "kernel='linear'", "split": "pass fewer cases"},
                             flags={"kernel": "--kernel linear", "split": "--split to compare a subset"})
    return cka_from_grams(gram(x, kernel, sigma), gram(y, kernel, sigma), debiased)


def bootstrap_cka(x, y, n_boot: int, seed: int = 0, kernel: str = "linear", debiased: bool = False,
                  sigma: float = 1.0, level: float = 0.95) -> tuple[float, float, np.ndarray]:
    """Percentile bootstrap interval over cases: (low, high, the n_boot replicates).

    Cases are resampled with replacement (numpy Generator seeded by `seed`); the rbf
    bandwidth stays the one of the full sample. Biased estimator: CKA of each resample,
    as is; its upward bias grows as the number of distinct cases falls (~63% of n in a
    resample), so at small n its replicates sit above the estimate (use --debiased).
    Debiased estimator: repeated cases would put copies of the kernel diagonal off the
    diagonal and bias it upwards, so each replicate is computed on the distinct cases of
    the resample: replicates centre on the estimate, and the interval is conservative
    (it reflects ~0.63 n cases).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    use_gram = kernel == "rbf" or n <= GRAM_BOOTSTRAP_MAX
    if use_gram:
        k, l = gram(x, kernel, sigma), gram(y, kernel, sigma)

    for b in progress(range(n_boot), desc="cka bootstrap", unit="rep"):
        idx = rng.integers(0, n, size=n)
        if debiased:
            idx = np.unique(idx)
        try:
            if use_gram:
                reps[b] = cka_from_grams(k[np.ix_(idx, idx)], l[np.ix_(idx, idx)], debiased)
            else:
                reps[b] = linear_cka(x[idx], y[idx], debiased)
        except RadlensError:
            reps[b] = np.nan
    ok = reps[np.isfinite(reps)]
    if len(ok) == 0:
        return float("nan"), float("nan"), reps
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(ok, [tail, 1.0 - tail])
    return float(low), float(high), reps


def check_options(kernel: str = "linear", sigma: float = 1.0, bootstrap: int = 0, level: float = 0.95) -> None:
    """cka_tables' option checks (a caller may run them before reading its inputs)."""
    if kernel not in KERNELS:
        raise ParameterError(f"{{kernel}} {kernel}: use {' or '.join(KERNELS)}", "kernel")
    if not sigma > 0:
        raise ParameterError(f"{{sigma}} {sigma}: must be positive", "sigma")
    if bootstrap < 0:
        raise ParameterError("{bootstrap} must be 0 or more", "bootstrap")
    if not 0 < level < 1:
        raise ParameterError(f"{{level}} {level}: must lie in (0, 1)", "level", flags={"level": "--ci-level"})


def finite_columns(table: CaseTable, what: str, warn=None) -> CaseTable:
    """Drop columns holding NaN/inf over the given cases, with a warning naming them."""
    bad = ~np.isfinite(table.values).all(axis=0)
    if bad.any():
        names = [c for c, b in zip(table.columns, bad) if b]
        more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
        if warn:
            warn(f"{table.path or what}: dropped {len(names)} column(s) with non-finite values: "
                 f"{', '.join(names[:3])}{more}")
        table = table.take(cols=~bad)
    if not table.columns:
        raise RadlensError(f"{table.path or what}: no column with finite values on the shared cases")
    return table


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def cka_tables(ta: CaseTable, tb: CaseTable, kernel: str = "linear", debiased: bool = False, sigma: float = 1.0,
               standardize: bool = False, split: str | None = None, bootstrap: int = 0, level: float = 0.95,
               seed: int = 0, warn=None, info=None) -> dict:
    """`radlens cka` on two case tables: CKA on the cases both hold (of `split`), columns
    with NaN/inf dropped (warned), optionally z-scored; with `bootstrap` a percentile
    interval at `level` over resampled cases. Returns the CSV row (without the inputs'
    names a, b): kernel, ..., n_cases, dims_a, dims_b, cka, ci_low, ci_high, ..."""
    check_options(kernel, sigma, bootstrap, level)
    ia, ib = align_cases(ta, tb, allow_missing=True, names=("first table", "second table"))
    if len(ia) < max(ta.n_cases, tb.n_cases) and info:
        info(f"cka: {len(ia)} shared cases ({ta.n_cases} in {ta.path}, {tb.n_cases} in {tb.path})")
    paths = f"{ta.path} and {tb.path}"
    ta, tb = ta.take(ia), tb.take(ib)
    if split:
        src = ta if ta.split is not None else tb
        mask = src.split_mask(split, paths)
        if not mask.any():
            raise ParameterError(f"{{split}} {split}: no shared case is in split {split!r}", "split",
                                 exit_code=EXIT_DATA)
        ta, tb = ta.take(mask), tb.take(mask)
    ta, tb = finite_columns(ta, "first table", warn), finite_columns(tb, "second table", warn)
    xa, xb = ta.values, tb.values
    if standardize:
        xa, xb = _zscore(xa), _zscore(xb)
    value = cka(xa, xb, kernel=kernel, debiased=debiased, sigma=sigma)
    low = high = float("nan")
    if bootstrap:
        low, high, _ = bootstrap_cka(xa, xb, bootstrap, seed, kernel, debiased, sigma, level)
    return {"kernel": kernel, "debiased": debiased,
            "sigma": sigma if kernel == "rbf" else "", "standardize": standardize, "split": split or "",
            "n_cases": len(ta.case_id), "dims_a": len(ta.columns), "dims_b": len(tb.columns),
            "cka": value, "ci_low": low, "ci_high": high, "level": level if bootstrap else "",
            "n_bootstrap": bootstrap, "seed": seed}
