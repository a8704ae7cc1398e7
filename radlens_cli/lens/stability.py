"""Feature stability: the intraclass correlation of each column over perturbed replicates.

ICC(1,1) (Shrout & Fleiss 1979, case 1; McGraw & Wong 1996, "ICC(1)"): one-way random
effects, single measurement. Replicates of a subject are exchangeable draws (replicate
r1 of one case shares nothing with r1 of another: there is no "rater"), so the two-way
forms, which separate a rater effect, do not apply; ICC(1,1) is the form Zwanenburg et
al. (Sci Rep 2019) use for image perturbations.

    MSB = sum_i k_i (mean_i - mean)^2 / (n - 1)         between subjects
    MSW = sum_i sum_j (x_ij - mean_i)^2 / (N - n)       within subjects
    ICC = (MSB - MSW) / (MSB + (k - 1) MSW)

with the F-based interval (McGraw & Wong 1996, Table 7, case 1): F = MSB/MSW,
F_L = F / F_{1-a/2}(n-1, N-n), F_U = F * F_{1-a/2}(N-n, n-1), interval
((F_L - 1)/(F_L + k - 1), (F_U - 1)/(F_U + k - 1)). With unequal replicate counts k is
k0 = (N - sum_i k_i^2 / N) / (n - 1) (Donner 1986); balanced data give k0 = k.

Pure functions on arrays: no file is read or written here.
"""

from __future__ import annotations

import numpy as np

from radlens_cli.errors import ParameterError, ParameterMessage
from radlens_cli.lens.compare import Comparison, ranks, three_views
from radlens_cli.lens.fdr import bh_fdr
from radlens_cli.lens.stats import group_labels

ICC_COLUMNS = ("column", "icc", "ci_low", "ci_high", "n_subjects", "n_replicates")
ICC_FORM = "ICC(1,1)"


def icc1(values, groups, level: float = 0.95):
    """ICC(1,1) of every column of `values` (observations x columns) grouped by `groups`.

    Returns a dict of arrays over columns: icc, ci_low, ci_high, n_subjects and
    n_replicates (k, or k0 when subjects have unequal counts), plus msb, msw.
    A column's non-finite values are left out (that column is computed on the rest);
    subjects with a single observation of a column count for the between-subject mean
    square only. A column constant within and between subjects has ICC NaN; one
    constant within subjects but not between has ICC 1 and the interval [1, 1].
    """
    from scipy.stats import f as fdist

    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ParameterError(f"{{values}}: expected a 2-D array (observations x columns), got shape {x.shape}",
                             "values")
    groups = np.asarray(groups)
    if groups.shape != (x.shape[0],):
        raise ParameterError(f"{{group}}: {groups.shape[0] if groups.ndim else 0} labels for {x.shape[0]} "
                             f"observations", "group")
    if not 0 < level < 1:
        raise ParameterError(f"{{level}} {level}: must lie in (0, 1)", "level", flags={"level": "--ci-level"})
    _, g = np.unique(groups.astype(str), return_inverse=True)
    n_groups = int(g.max()) + 1 if g.size else 0
    if n_groups < 2:
        raise ParameterError(f"{{group}}: ICC needs at least 2 subjects, got {n_groups}", "group")
    onehot = np.zeros((n_groups, x.shape[0]))
    onehot[g, np.arange(x.shape[0])] = 1.0

    ok = np.isfinite(x)
    xz = np.where(ok, x, 0.0)
    k_i = onehot @ ok                                     # (subjects, columns): observations per subject
    sums = onehot @ xz
    big_n = k_i.sum(axis=0)
    present = k_i > 0
    n = present.sum(axis=0)                               # subjects with at least one observation
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(present, sums / np.where(present, k_i, 1.0), 0.0)
        grand = xz.sum(axis=0) / big_n
        # within: deviations from each subject's own mean, computed directly (no sum-of-squares cancellation)
        dev = np.where(ok, x - means[g], 0.0)
        ssw = (dev ** 2).sum(axis=0)
        ssb = (k_i * (means - grand) ** 2).sum(axis=0)
        df_b = n - 1.0
        df_w = big_n - n
        msb = ssb / df_b
        msw = ssw / df_w
        k0 = (big_n - (k_i ** 2).sum(axis=0) / big_n) / df_b
        icc = (msb - msw) / (msb + (k0 - 1.0) * msw)
        fval = msb / msw
        a = (1.0 - level) / 2.0
        f_l = fval / fdist.ppf(1.0 - a, df_b, df_w)
        f_u = fval * fdist.ppf(1.0 - a, df_w, df_b)
        low = (f_l - 1.0) / (f_l + k0 - 1.0)
        high = (f_u - 1.0) / (f_u + k0 - 1.0)
    undefined = (n < 2) | (df_w <= 0)
    perfect = ~undefined & (msw == 0) & (msb > 0)
    icc = np.where(perfect, 1.0, icc)
    low = np.where(perfect, 1.0, low)
    high = np.where(perfect, 1.0, high)
    for arr in (icc, low, high):
        arr[undefined | ~np.isfinite(arr)] = np.nan
    return {"icc": icc, "ci_low": low, "ci_high": high, "n_subjects": n.astype(np.int64),
            "n_replicates": k0, "msb": msb, "msw": msw}


def icc_table(values, columns, groups, level: float = 0.95):
    """ICC(1,1) per column as a DataFrame with ICC_COLUMNS (n_replicates an integer when
    every subject has the same count, else k0)."""
    import pandas as pd

    res = icc1(values, groups, level)
    k = res["n_replicates"]
    whole = np.isfinite(k) & (np.abs(k - np.rint(k)) < 1e-9)
    reps = np.where(whole, np.rint(k), k)
    out = pd.DataFrame({"column": list(map(str, columns)), "icc": res["icc"], "ci_low": res["ci_low"],
                        "ci_high": res["ci_high"], "n_subjects": res["n_subjects"],
                        "n_replicates": reps.astype(np.int64) if whole.all() else reps})
    return out


def stable_columns(icc, columns, min_icc: float):
    """Boolean mask over `columns`: True where the column's ICC is >= min_icc.

    icc: a mapping column -> ICC (or a DataFrame with `column` and `icc`). A column
    without an ICC, or with ICC NaN (constant), does not pass: its stability is unknown.
    """
    if not -1.0 <= min_icc <= 1.0:
        raise ParameterError(f"{{min_icc}} {min_icc}: must lie in [-1, 1]", "min_icc")
    lookup = icc_lookup(icc)
    vals = np.array([lookup.get(str(c), np.nan) for c in columns], dtype=np.float64)
    return np.isfinite(vals) & (vals >= min_icc)


def icc_lookup(icc) -> dict:
    """column -> ICC from a DataFrame with `column` and `icc` columns, or a mapping."""
    if hasattr(icc, "columns"):
        missing = [c for c in ("column", "icc") if c not in icc.columns]
        if missing:
            raise ParameterError(f"{{stability}}: no {', '.join(missing)} column", "stability")
        return dict(zip(icc["column"].astype(str), icc["icc"].astype(float)))
    return {str(k): float(v) for k, v in dict(icc).items()}


def stable_delta(delta, icc, min_icc: float | None = None, rank_by: str = "delta_r2"):
    """compare's delta table with an `icc` column; with min_icc, the rows of columns whose
    ICC is below it (or unknown) left out, and, within each checkpoint, the BH families
    (q_bh from p_null, q_perm from p_perm) and the gain/loss ranks recomputed over the rows
    kept, so unstable features neither take a rank nor dilute a q-value.

    Returns (table, number of (checkpoint, column) rows left out)."""
    import pandas as pd

    lookup = icc_lookup(icc)
    out = delta.copy()
    out["icc"] = np.array([lookup.get(str(c), np.nan) for c in out["column"]], dtype=np.float64)
    if min_icc is None:
        return out, 0
    keep = stable_columns(lookup, out["column"], min_icc)
    if not keep.any():
        raise ParameterError(f"{{min_icc}} {min_icc:g}: no feature of the table has an ICC that high "
                             f"({int(out['icc'].notna().sum())} of {len(out)} rows have an ICC at all)", "min_icc")
    n_out = int((~keep).sum())
    out = out[keep].reset_index(drop=True)
    blocks = []
    groups = out.groupby("checkpoint", sort=False) if "checkpoint" in out.columns else [(None, out)]
    for _, block in groups:
        block = block.copy()
        for p, q in (("p_null", "q_bh"), ("p_perm", "q_perm")):
            if p in block.columns and q in block.columns:
                block[q] = bh_fdr(block[p].to_numpy(dtype=np.float64))
        if {"rank_gain", "rank_loss"} <= set(block.columns) and rank_by in block.columns:
            mask = block["decodable"].to_numpy(dtype=bool) if "decodable" in block.columns else None
            g, lo = ranks(block[rank_by].to_numpy(dtype=np.float64), mask)
            block["rank_gain"] = pd.array(np.where(np.isnan(g), pd.NA, g), dtype="Int64")
            block["rank_loss"] = pd.array(np.where(np.isnan(lo), pd.NA, lo), dtype="Int64")
        blocks.append(block)
    out = pd.concat(blocks, ignore_index=True) if blocks else out
    return out, n_out


def stable_comparison(result, icc, min_icc: float | None = None, top: int = 5, stable_quantile: float = 0.5,
                      icc_name: str = "the ICC table", warn=None, info=None):
    """A lens.Comparison with `icc` in its table; with min_icc, unstable features left out of
    the table, its BH families and ranks (stable_delta) and its three views. warn hears of
    rows without an ICC (in `icc_name`), info of the rows min_icc left out.
    Returns (Comparison, number of (checkpoint, column) rows left out)."""
    table, n_out = stable_delta(result.table, icc, min_icc, result.rank_by)
    views = dict(result.views)
    if min_icc is not None and top > 0:
        views = {name: three_views(table[table["checkpoint"] == name].reset_index(drop=True), top,
                                   stable_quantile, result.rank_by) for name in result.views}
    if min_icc is None and table["icc"].isna().any() and warn:
        warn(f"compare: {int(table['icc'].isna().sum())} row(s) have no ICC in {icc_name} "
             f"(features it does not list, or constant ones)")
    if min_icc is not None and info:
        info(ParameterMessage(f"compare: {{min_icc}} {min_icc:g} left {n_out} (checkpoint, feature) row(s) out of "
                              f"the table, its BH families, ranks and views", "min_icc"))
    return Comparison(table, result.rank_by, views), n_out


def group_median_icc(table, columns, column_meta: dict, icc, keep=None):
    """stats' group table with `median_icc`: the median ICC of each group's features
    (those with an ICC; NaN when none has one); keep: the columns the groups were made of
    (None: all)."""
    if keep is not None:
        mask = np.isin(np.asarray(columns, dtype=str), np.asarray(list(keep), dtype=str))
        columns = [c for c, m in zip(columns, mask) if m]
        column_meta = {k: np.asarray(v)[mask] for k, v in column_meta.items()}
    lookup = icc_lookup(icc)
    vals = np.array([lookup.get(str(c), np.nan) for c in columns], dtype=np.float64)
    med = {}
    for grouping in dict.fromkeys(table["group_by"]):
        labels = np.asarray(group_labels(column_meta, grouping)).astype(str)
        for g in np.unique(labels):
            v = vals[labels == g]
            med[(grouping, g or "(none)")] = float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else np.nan
    out = table.copy()
    out["median_icc"] = [med.get((a, b), np.nan) for a, b in zip(out["group_by"], out["group"])]
    return out
