"""Rad4XCNN: correlation maps between deep (embedding) features and radiomic features.

Every deep feature is correlated with every radiomic feature over the same cases
(Spearman by default, as in Rad4XCNN; Pearson as an option). A deep feature is
"explained" by the radiomic features it correlates with at |rho| >= M (the paper's
threshold) that also survive Benjamini-Hochberg FDR over all pairs.

Vectorised: rank-transform each column once (average ranks for ties), standardise to
unit norm, and take one matrix product (chunked over radiomic columns so memory stays
bounded). p-values use the t approximation of scipy.stats.spearmanr:
t = r * sqrt((n-2) / ((1+r)(1-r))), two-sided, n-2 degrees of freedom; for Pearson this
is the same distribution as scipy.stats.pearsonr's exact beta form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.io.tables import CaseTable, align_cases
from radlens_cli.lens.fdr import bh_fdr
from radlens_cli.names import META_KEYS, table_column_meta

METHODS = ("spearman", "pearson")
CONSTANT = "constant"
NON_FINITE = "non-finite"


@dataclass
class Correlation:
    """Correlations between the kept columns of X (deep) and Y (radiomic)."""

    rho: np.ndarray          # (dx_kept, dy_kept)
    p: np.ndarray            # two-sided p-values, same shape
    q: np.ndarray            # BH q-values over all pairs
    n_cases: int
    reason_x: np.ndarray     # (dx,) '' for kept columns, else why excluded
    reason_y: np.ndarray     # (dy,)
    method: str = "spearman"

    @property
    def keep_x(self) -> np.ndarray:
        return self.reason_x == ""

    @property
    def keep_y(self) -> np.ndarray:
        return self.reason_y == ""


def column_status(values: np.ndarray) -> np.ndarray:
    """Per column: '' (usable), 'non-finite' (any NaN/inf) or 'constant' (one value)."""
    v = np.asarray(values, dtype=np.float64)
    out = np.full(v.shape[1], "", dtype=object)
    finite = np.isfinite(v).all(axis=0)
    out[~finite] = NON_FINITE
    if v.shape[0]:
        with np.errstate(invalid="ignore"):
            const = (v.max(axis=0) == v.min(axis=0)) & finite
        out[const] = CONSTANT
    return out


def _standardise(v: np.ndarray, method: str) -> np.ndarray:
    """Columns ranked (spearman) or as is (pearson), centred, scaled to unit norm."""
    if method == "spearman":
        from scipy.stats import rankdata

        z = rankdata(v, axis=0).astype(np.float64, copy=False)
    else:
        z = np.array(v, dtype=np.float64)
    z -= z.mean(axis=0)
    z /= np.linalg.norm(z, axis=0)
    return z


def correlation_matrix(x: np.ndarray, y: np.ndarray, method: str = "spearman",
                       chunk: int = 1024) -> np.ndarray:
    """rho (dx, dy) between columns of x (n, dx) and y (n, dy); columns must not be constant.

    Float64 throughout; y is standardised `chunk` columns at a time.
    """
    if method not in METHODS:
        raise RadlensError(f"unknown correlation method {method!r} (use {' or '.join(METHODS)})")
    xs = _standardise(x, method)
    dy = y.shape[1]
    rho = np.empty((xs.shape[1], dy), dtype=np.float64)
    for j0 in range(0, dy, chunk):
        j1 = min(dy, j0 + chunk)
        np.matmul(xs.T, _standardise(y[:, j0:j1], method), out=rho[:, j0:j1])
    np.clip(rho, -1.0, 1.0, out=rho)
    return rho


def p_values(rho: np.ndarray, n: int) -> np.ndarray:
    """Two-sided p-values of correlations over n cases (t distribution, n-2 df)."""
    from scipy.special import stdtr

    df = float(n - 2)
    rho = np.asarray(rho, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = rho * np.sqrt((df / ((rho + 1.0) * (1.0 - rho))).clip(0))
    np.abs(t, out=t)
    np.negative(t, out=t)
    p = stdtr(df, t)
    p *= 2.0
    return np.minimum(p, 1.0, out=p)


def correlate(x: np.ndarray, y: np.ndarray, method: str = "spearman", chunk: int = 1024) -> Correlation:
    """rho, p and BH q between every usable column of x and of y (rows are the same cases).

    Constant and non-finite columns are excluded (listed in reason_x / reason_y), so the
    outputs never hold NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape[0] != y.shape[0]:
        raise RadlensError(f"correlate: {x.shape[0]} cases in the deep features but {y.shape[0]} "
                           f"in the radiomic features")
    n = x.shape[0]
    if n < 3:
        raise RadlensError(f"correlate: {n} shared case(s); need at least 3 for a correlation p-value")
    rx, ry = column_status(x), column_status(y)
    kx, ky = rx == "", ry == ""
    if not kx.any():
        raise RadlensError("correlate: every deep feature is constant or non-finite over the cases")
    if not ky.any():
        raise RadlensError("correlate: every radiomic column is constant or non-finite over the cases")
    rho = correlation_matrix(x[:, kx], y[:, ky], method, chunk)
    p = p_values(rho, n)
    q = bh_fdr(p)
    return Correlation(rho=rho, p=p, q=q, n_cases=n, reason_x=rx, reason_y=ry, method=method)


def significant(rho: np.ndarray, q: np.ndarray, threshold: float, alpha: float) -> np.ndarray:
    """Boolean mask of correlated pairs: |rho| >= threshold and q < alpha."""
    return (np.abs(rho) >= threshold) & (q < alpha)


# ---------------------------------------------------------------- tables of results

def pairs_table(rho, p, q, deep_features, columns, meta, threshold: float, alpha: float):
    """Long table of correlated pairs, strongest |rho| first.

    Columns: deep_feature, column, modality, image_type, family, feature, rho, p, q.
    """
    import pandas as pd

    sig = significant(rho, q, threshold, alpha)
    i, j = np.nonzero(sig)
    r = rho[i, j]
    order = np.lexsort((j, i, -np.abs(r)))
    i, j = i[order], j[order]
    deep = np.asarray(deep_features, dtype=object)
    cols = np.asarray(columns, dtype=object)
    return pd.DataFrame({
        "deep_feature": deep[i], "column": cols[j],
        **{k: np.asarray(meta[k], dtype=object)[j] for k in META_KEYS},
        "rho": rho[i, j], "p": p[i, j], "q": q[i, j],
    })


def explanation_table(rho, q, deep_features, columns, meta, threshold: float, alpha: float,
                      top: int = 5):
    """One row per deep feature: how many radiomic features explain it, and the strongest.

    Columns: deep_feature, n_correlated, max_abs_rho, top_column, top_rho, top_family,
    top_modality, families (family:count, most first), top_columns (column:rho; `top` of them).
    Rad4XCNN's global explanation: a deep feature means what its correlated radiomic
    features mean.
    """
    import pandas as pd

    sig = significant(rho, q, threshold, alpha)
    n_corr = sig.sum(axis=1)
    absr = np.where(sig, np.abs(rho), -1.0)
    k = max(1, min(int(top), rho.shape[1]))
    # the top-k correlated columns per deep feature without sorting the full rows
    part = np.argpartition(-absr, k - 1, axis=1)[:, :k]
    part_abs = np.take_along_axis(absr, part, axis=1)
    idx = np.take_along_axis(part, np.argsort(-part_abs, axis=1, kind="stable"), axis=1)
    cols = np.asarray(columns, dtype=object)
    fam = np.asarray(meta["family"], dtype=object)
    mod = np.asarray(meta["modality"], dtype=object)
    fam_codes, fam_idx = np.unique(fam.astype(str), return_inverse=True)
    onehot = np.zeros((len(cols), len(fam_codes)))
    onehot[np.arange(len(cols)), fam_idx] = 1.0
    fam_counts = sig.astype(np.float64) @ onehot  # (d, n_families)
    rows = []
    for a, name in enumerate(deep_features):
        m = int(n_corr[a])
        if m == 0:
            rows.append((name, 0, 0.0, "", np.nan, "", "", "", ""))
            continue
        chosen = [b for b in idx[a] if absr[a, b] >= 0]
        best = chosen[0]
        fams = sorted(((int(c), f) for f, c in zip(fam_codes, fam_counts[a]) if c > 0),
                      key=lambda t: (-t[0], t[1]))
        rows.append((name, m, float(abs(rho[a, best])), cols[best], float(rho[a, best]),
                     fam[best], mod[best],
                     ";".join(f"{f or 'unknown'}:{c}" for c, f in fams),
                     ";".join(f"{cols[b]}:{rho[a, b]:.4f}" for b in chosen)))
    return pd.DataFrame(rows, columns=["deep_feature", "n_correlated", "max_abs_rho", "top_column",
                                       "top_rho", "top_family", "top_modality", "families",
                                       "top_columns"])


def summary_table(sig_pre: np.ndarray, sig_ft: np.ndarray, meta: dict) -> "object":
    """Per (modality, family) group: deep features with >= 1 correlated radiomic feature in
    the group, and correlated pairs, before vs after fine-tuning.

    sig_pre (d_pre, r) and sig_ft (d_ft, r) share the radiomic axis (same columns, same
    order). Rows for every modality x family, then each modality over all families, each
    family over all modalities, and all/all.
    """
    import pandas as pd

    mod = np.asarray(meta["modality"], dtype=object).astype(str)
    fam = np.asarray(meta["family"], dtype=object).astype(str)
    mod = np.where(mod == "", "unknown", mod)
    fam = np.where(fam == "", "unknown", fam)
    groups = []
    for m in sorted(set(mod)):
        for f in sorted(set(fam[mod == m])):
            groups.append((m, f, (mod == m) & (fam == f)))
    for m in sorted(set(mod)):
        groups.append((m, "all", mod == m))
    for f in sorted(set(fam)):
        groups.append(("all", f, fam == f))
    groups.append(("all", "all", np.ones(len(mod), dtype=bool)))
    member = np.stack([g[2] for g in groups], axis=1).astype(np.float64)  # (r, G)

    def counts(sig):
        per = sig.astype(np.float64) @ member  # (d, G): correlated columns of each group
        return (per > 0).sum(axis=0), per.sum(axis=0).astype(np.int64)

    deep_pre, pairs_pre = counts(sig_pre)
    deep_ft, pairs_ft = counts(sig_ft)
    d_pre, d_ft = sig_pre.shape[0], sig_ft.shape[0]
    df = pd.DataFrame({
        "modality": [g[0] for g in groups], "family": [g[1] for g in groups],
        "n_columns": member.sum(axis=0).astype(np.int64),
        "deep_pre": deep_pre, "deep_ft": deep_ft, "delta_deep": deep_ft - deep_pre,
        "frac_pre": deep_pre / max(d_pre, 1), "frac_ft": deep_ft / max(d_ft, 1),
        "pairs_pre": pairs_pre, "pairs_ft": pairs_ft, "delta_pairs": pairs_ft - pairs_pre,
    })
    return df


def check_options(method: str = "spearman", threshold: float = 0.5, alpha: float = 0.05,
                  explain_top: int = 5) -> None:
    """correlate_tables' option checks (a caller may run them before reading its inputs)."""
    if method not in METHODS:
        raise ParameterError(f"{{method}} {method}: use {' or '.join(METHODS)}", "method")
    if not 0.0 <= threshold <= 1.0:
        raise ParameterError(f"{{threshold}} {threshold}: must lie in [0, 1]", "threshold")
    if not 0.0 < alpha <= 1.0:
        raise ParameterError(f"{{alpha}} {alpha}: must lie in (0, 1]", "alpha")
    if explain_top < 1:
        raise ParameterError("{explain_top} must be at least 1", "explain_top")


@dataclass
class TableCorrelation:
    """correlate_tables' result: the Correlation of the kept columns, with the tables'
    names and metadata around it."""

    corr: Correlation
    deep: np.ndarray          # every embedding column's name
    columns: np.ndarray       # every radiomic column's name
    meta: dict                # META_KEYS -> per radiomic column
    case_id: np.ndarray       # the cases correlated
    threshold: float
    alpha: float
    explain_top: int = 5

    @property
    def significant(self) -> np.ndarray:
        return significant(self.corr.rho, self.corr.q, self.threshold, self.alpha)

    def _kept(self):
        ky = self.corr.keep_y
        return self.deep[self.corr.keep_x], self.columns[ky], {k: self.meta[k][ky] for k in META_KEYS}

    def pairs_table(self):
        """`radlens correlate --pairs`: one row per significant pair."""
        deep, cols, meta = self._kept()
        return pairs_table(self.corr.rho, self.corr.p, self.corr.q, deep, cols, meta, self.threshold, self.alpha)

    def explanation_table(self):
        """`radlens correlate --explain`: each deep feature's top radiomic features."""
        deep, cols, meta = self._kept()
        return explanation_table(self.corr.rho, self.corr.q, deep, cols, meta, self.threshold, self.alpha,
                                 self.explain_top)


def correlate_tables(emb: CaseTable, rad: CaseTable, method: str = "spearman", threshold: float = 0.5,
                     alpha: float = 0.05, split: str | None = None, allow_missing: bool = False,
                     explain_top: int = 5, warn=None, info=None) -> TableCorrelation:
    """`radlens correlate` on case tables: every embedding column against every radiomic
    column over the cases both hold (of `split`, from the embeddings' split, else the
    radiomics'); constant and non-finite columns are left out (warned)."""
    warn, info = warn or (lambda m: None), info or (lambda m: None)
    check_options(method, threshold, alpha, explain_top)
    ie, ir = align_cases(emb, rad, allow_missing, names=("embeddings", "radiomics"))
    emb, rad = emb.take(ie), rad.take(ir)
    if split:
        with_split = [t for t in (emb, rad) if t.split is not None]
        if not with_split:
            raise ParameterError(f"{{split}} {split}: neither {emb.path} nor {rad.path} has a `split` dataset",
                                 "split", exit_code=EXIT_DATA)
        mask = with_split[0].split_mask(split)
        if not mask.any():
            raise ParameterError(f"{{split}} {split}: no shared case is in split {split!r}", "split",
                                 exit_code=EXIT_DATA)
        emb, rad = emb.take(mask), rad.take(mask)
    meta = table_column_meta(rad.columns, rad.column_meta)
    res = correlate(emb.values, rad.values, method=method)
    out = TableCorrelation(res, np.array(emb.columns, dtype=object), np.array(rad.columns, dtype=object),
                           {k: meta[k] for k in META_KEYS}, emb.case_id, threshold, alpha, explain_top)
    for what, names, reason in (("deep feature", out.deep, res.reason_x),
                                ("radiomic column", out.columns, res.reason_y)):
        bad = reason != ""
        if bad.any():
            shown = ", ".join(f"{n} ({r})" for n, r in zip(names[bad][:5], reason[bad][:5]))
            more = f" (+{int(bad.sum()) - 5} more)" if bad.sum() > 5 else ""
            warn(f"correlate: {int(bad.sum())} {what}(s) excluded: {shown}{more}")
    sig = out.significant
    info(f"correlate: {res.n_cases} cases, {int(res.keep_x.sum())} deep features x {int(res.keep_y.sum())} "
         f"radiomic columns ({method}); {int(sig.sum())} pairs with |rho| >= {threshold} and q < {alpha}; "
         f"{int(sig.any(axis=1).sum())} deep feature(s) explained by at least one radiomic feature")
    return out
