"""Decodability and importance change between decoders of the same share model
(paper Sect. 3.6, 4.2).

Per feature: held-out decodability r2_pre, r2_ft, delta_r2 (the calibrated lens's rank
statistic) and the paper's I_k = ||theta_k,:||_2 (intercept excluded), delta_importance =
I_ft - I_pre, from the decoders' stored theta (see docs/lens.md: least-squares weight
norms grow for features the embedding does NOT encode, so delta_importance alone can rank
gains and losses backwards when n_train is not >> h). The default test is `paired_test`
(p_null, q_bh); the permutation test below gives p_perm, q_perm.

Refits for the bootstrap and the permutation test work on the normal equations: the Gram
matrices Z^T Z and cross products Z^T R are computed once and updated with the rows that a
resample or a swap changes (a permutation changes pre and ft by the same low-rank term
with opposite signs), then solved through a symmetric eigendecomposition (pseudo-inverse
on the numerical null space, ridge as stored in each decoder). The observed statistic of
the permutation test is recomputed with this same solver so the test compares like with
like; the reported importances stay the paper's numbers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import ParameterError, ParameterMessage, RadlensError
from radlens_cli.io.tables import CaseTable, align_cases
from radlens_cli.lens import interval
from radlens_cli.lens.checks import require_compatible
from radlens_cli.lens.decoder import _r2, importance, r2_score, solve_moments
from radlens_cli.lens.fdr import bh_fdr
from radlens_cli.names import parse_list

RANK_BY = ("delta_importance", "delta_r2", "delta_r2_clipped")
DECODABLE_R2 = 0.0     # a feature is decodable when R^2 > this in at least one stage
DEFAULT_TEST = "paired_t_sqerr"
DELTA_COLUMNS = ["checkpoint", "column", "modality", "image_type", "family", "feature",
                 "r2_pre", "r2_ft", "delta_r2", "importance_pre", "importance_ft",
                 "delta_importance", "decodable", "p_null", "q_bh", "test", "rank_gain",
                 "rank_loss"]


def require_same_share(pre, ft) -> None:
    """Named error when two decoders were fitted on different share models."""
    if pre.share_hash != ft.share_hash:
        raise RadlensError(f"{pre.path} and {ft.path} were decoded with different share models "
                           f"(share_hash {pre.share_hash[:12]}... vs {ft.share_hash[:12]}...); "
                           f"decode both embeddings with the same SHARE.h5")
    if list(pre.columns) != list(ft.columns):
        raise RadlensError(f"{pre.path} and {ft.path} decode different radiomic columns")


def ranks(stat: np.ndarray, mask: np.ndarray | None = None):
    """(rank_gain, rank_loss): 1 = largest increase / largest decrease (stable on ties).

    With `mask`, only masked entries are ranked (among themselves); the others get NaN."""
    stat = np.asarray(stat, dtype=np.float64)
    if mask is None:
        gain = np.empty(len(stat), dtype=np.int64)
        gain[np.argsort(-stat, kind="stable")] = np.arange(1, len(stat) + 1)
        loss = np.empty(len(stat), dtype=np.int64)
        loss[np.argsort(stat, kind="stable")] = np.arange(1, len(stat) + 1)
        return gain, loss
    idx = np.flatnonzero(mask)
    g, lo = ranks(stat[idx])
    gain, loss = np.full(len(stat), np.nan), np.full(len(stat), np.nan)
    gain[idx], loss[idx] = g, lo
    return gain, loss


def paired_test(sq_pre: np.ndarray, sq_ft: np.ndarray) -> np.ndarray:
    """The default per-feature test: two-sided paired t-test, over the evaluation cases, of
    each case's squared error under the fine-tuned decoder minus under the reference one.

    On the same cases R^2 = 1 - RSS/TSS with one TSS, so this tests delta_r2 = 0 given the
    two fitted decoders. Features whose errors agree to float32 rounding in every case
    (the same information in another basis, after alignment) get p = 1."""
    from scipy.stats import t as tdist

    a = np.asarray(sq_pre, dtype=np.float64)
    b = np.asarray(sq_ft, dtype=np.float64)
    D = b - a
    n = D.shape[0]
    tol = 1e-5 * (np.abs(a) + np.abs(b)) + 1e-12
    same = (np.abs(D) <= tol).all(axis=0)
    p = np.ones(D.shape[1])
    if n < 3:
        return np.full(D.shape[1], np.nan)
    mean = D.mean(axis=0)
    sd = D.std(axis=0, ddof=1)
    ok = ~same & (sd > 0)
    t = mean[ok] / (sd[ok] / np.sqrt(n))
    p[ok] = 2.0 * tdist.sf(np.abs(t), n - 1)
    p[~same & (sd == 0) & (mean != 0)] = 0.0
    return p


def delta_table(columns, meta: dict, theta_pre, theta_ft, r2_pre, r2_ft,
                rank_by: str = "delta_r2", checkpoint: str = "ft", p_null=None,
                test: str = DEFAULT_TEST):
    """The DELTA table (pandas DataFrame) of one comparison, one row per radiomic column.

    decodable: R^2 > DECODABLE_R2 in at least one stage; rank_gain/rank_loss rank the
    decodable features by `rank_by` (empty for the others); q_bh is the BH q-value of
    p_null (the `test` column) within this comparison."""
    import pandas as pd

    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {RANK_BY}")
    ip, ifd = importance(theta_pre), importance(theta_ft)
    df = pd.DataFrame({"checkpoint": [checkpoint] * len(columns), "column": list(columns)})
    for k in ("modality", "image_type", "family", "feature"):
        df[k] = np.asarray(meta.get(k, [""] * len(columns)), dtype=object)
    df["r2_pre"], df["r2_ft"] = np.asarray(r2_pre, float), np.asarray(r2_ft, float)
    df["delta_r2"] = df["r2_ft"] - df["r2_pre"]
    df["importance_pre"], df["importance_ft"], df["delta_importance"] = ip, ifd, ifd - ip
    dec = (df["r2_pre"].to_numpy() > DECODABLE_R2) | (df["r2_ft"].to_numpy() > DECODABLE_R2)
    df["decodable"] = dec
    p = np.full(len(columns), np.nan) if p_null is None else np.asarray(p_null, float)
    df["p_null"] = p
    df["q_bh"] = bh_fdr(p)
    df["test"] = test if p_null is not None else ""
    g, lo = ranks(df[rank_by].to_numpy(), dec)
    df["rank_gain"] = pd.array(np.where(np.isnan(g), pd.NA, g), dtype="Int64")
    df["rank_loss"] = pd.array(np.where(np.isnan(lo), pd.NA, lo), dtype="Int64")
    return df[DELTA_COLUMNS]


def three_views(df, k: int = 5, stable_quantile: float = 0.5, rank_by: str = "delta_r2"):
    """The paper's views: largest gains, largest losses, and the least changed among
    features important in both stages (above `stable_quantile` of each stage's values;
    importance for rank_by=delta_importance, R^2 for delta_r2). Features not decodable in
    either stage (the `decodable` column, when there) are left out of all three; a gain
    must be > 0 and a loss < 0 to be listed."""
    if "decodable" in df:
        df = df[df["decodable"].to_numpy(dtype=bool)]
    stat = df[rank_by].to_numpy()
    order = np.argsort(-stat, kind="stable")
    gains = df.iloc[order[stat[order] > 0][:k]]
    order = np.argsort(stat, kind="stable")
    losses = df.iloc[order[stat[order] < 0][:k]]
    a, b = (("importance_pre", "importance_ft") if rank_by == "delta_importance"
            else ("r2_clipped_pre", "r2_clipped_ft") if rank_by == "delta_r2_clipped"
            else ("r2_pre", "r2_ft"))
    va, vb = df[a].to_numpy(), df[b].to_numpy()
    if not len(df):
        return {"largest gains": gains, "largest losses": losses,
                f"least changed (above the {stable_quantile:g} quantile in both)": df}
    both = (va >= np.quantile(va, stable_quantile)) & (vb >= np.quantile(vb, stable_quantile))
    idx = np.flatnonzero(both)
    stable = df.iloc[idx[np.argsort(np.abs(stat[idx]), kind="stable")[:k]]]
    return {"largest gains": gains, "largest losses": losses,
            f"least changed (above the {stable_quantile:g} quantile in both)": stable}


def format_views(views: dict, rank_by: str) -> str:
    """A readable text table of the three views."""
    lines = [f"ranked by {rank_by}"]
    clip = rank_by == "delta_r2_clipped"    # the symmetric lens: R^2 clipped below at 0
    r2a, r2b, dr2 = (("r2_clipped_pre", "r2_clipped_ft", "delta_r2_clipped") if clip
                     else ("r2_pre", "r2_ft", "delta_r2"))
    for title, sub in views.items():
        lines.append("")
        lines.append(f"{title}:")
        if not len(sub):
            lines.append("  (none)")
            continue
        width = max(len(c) for c in sub["column"])
        lines.append(f"  {'column':<{width}}  {'I_pre':>9} {'I_ft':>9} {'dI':>10}  "
                     + (f"{'R2c_pre':>7} {'R2c_ft':>7} {'dR2c':>8}" if clip else
                        f"{'R2_pre':>7} {'R2_ft':>7} {'dR2':>8}"))
        for _, r in sub.iterrows():
            lines.append(f"  {r['column']:<{width}}  {r['importance_pre']:9.4g} "
                         f"{r['importance_ft']:9.4g} {r['delta_importance']:+10.4g}  "
                         f"{r[r2a]:7.3f} {r[r2b]:7.3f} {r[dr2]:+8.3f}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- refits

@dataclass
class PairedData:
    """Train/eval arrays of both decoders on the same cases, same order."""

    Zp_tr: np.ndarray
    Zf_tr: np.ndarray
    R_tr: np.ndarray
    Zp_ev: np.ndarray
    Zf_ev: np.ndarray
    R_ev: np.ndarray
    intercept: bool
    ridge_pre: float
    ridge_ft: float


def _r2_of(theta, bias, Z, R, w=None):
    pred = Z @ theta.T + bias
    if w is None:
        rss = ((R - pred) ** 2).sum(axis=0)
        tss = ((R - R.mean(axis=0)) ** 2).sum(axis=0)
    else:
        rss = w @ ((R - pred) ** 2)
        mean = (w @ R) / w.sum()
        tss = w @ ((R - mean) ** 2)
    return _r2(rss, tss)


def _stats(d: PairedData, theta_p, bias_p, theta_f, bias_f, need_r2, Zp_ev=None, Zf_ev=None, w_ev=None):
    di = importance(theta_f) - importance(theta_p)
    if not need_r2:
        return di, None
    Zp_ev = d.Zp_ev if Zp_ev is None else Zp_ev
    Zf_ev = d.Zf_ev if Zf_ev is None else Zf_ev
    dr2 = _r2_of(theta_f, bias_f, Zf_ev, d.R_ev, w_ev) - _r2_of(theta_p, bias_p, Zp_ev, d.R_ev, w_ev)
    return di, dr2


def permutation_test(d: PairedData, n_perm: int, seed: int = 0, rank_by: str = "delta_importance",
                     progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided permutation p-values of delta_importance or delta_r2 per feature.

    Each permutation swaps the pre and ft embeddings of every case (train and eval) with
    probability 1/2, refits both decoders and recomputes the statistic;
    p = (1 + #{|stat*| >= |stat_obs|}) / (1 + n_perm). Returns (p, observed statistic).
    """
    rng = np.random.default_rng(seed)
    need_r2 = rank_by == "delta_r2"
    n, n_ev = len(d.R_tr), len(d.R_ev)
    Gp, Gf = d.Zp_tr.T @ d.Zp_tr, d.Zf_tr.T @ d.Zf_tr
    Cp, Cf = d.Zp_tr.T @ d.R_tr, d.Zf_tr.T @ d.R_tr
    zp, zf, rs = d.Zp_tr.sum(0), d.Zf_tr.sum(0), d.R_tr.sum(0)
    D = d.Zf_tr - d.Zp_tr

    def stat_for(E, F, dz, Zp_ev=None, Zf_ev=None):
        tp, bp = solve_moments(Gp + E, Cp + F, n, zp + dz, rs, d.intercept, d.ridge_pre)
        tf, bf = solve_moments(Gf - E, Cf - F, n, zf - dz, rs, d.intercept, d.ridge_ft)
        di, dr2 = _stats(d, tp, bp, tf, bf, need_r2, Zp_ev, Zf_ev)
        return dr2 if need_r2 else di

    h, p = Gp.shape[0], Cp.shape[1]
    obs = stat_for(np.zeros((h, h)), np.zeros((h, p)), np.zeros(h))
    thresh = np.abs(obs) * (1 - 1e-9) - 1e-12   # equal values count as extreme
    count = np.zeros(p, dtype=np.int64)
    for _ in range(n_perm):
        s = rng.random(n) < 0.5
        E = d.Zf_tr[s].T @ d.Zf_tr[s] - d.Zp_tr[s].T @ d.Zp_tr[s]
        F = D[s].T @ d.R_tr[s]
        Zp_ev = Zf_ev = None
        if need_r2:
            se = (rng.random(n_ev) < 0.5)[:, None]
            Zp_ev, Zf_ev = np.where(se, d.Zf_ev, d.Zp_ev), np.where(se, d.Zp_ev, d.Zf_ev)
        count += np.abs(stat_for(E, F, D[s].sum(0), Zp_ev, Zf_ev)) >= thresh
        if progress is not None:
            progress()
    return (1.0 + count) / (1.0 + n_perm), obs


def bootstrap_ci(d: PairedData, n_boot: int, seed: int = 0, rank_by: str = "delta_importance",
                 level: float = 0.95, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI of delta_importance (or delta_r2) over case resamples.

    Train cases are resampled with replacement (the same resample for pre and ft, they are
    paired) and both decoders refitted; for delta_r2 the eval cases are resampled too.
    """
    rng = np.random.default_rng(seed)
    need_r2 = rank_by == "delta_r2"
    n, n_ev = len(d.R_tr), len(d.R_ev)
    out = np.empty((n_boot, d.R_tr.shape[1]))
    for b in range(n_boot):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        nz = w > 0
        Zp, Zf, R, ww = d.Zp_tr[nz], d.Zf_tr[nz], d.R_tr[nz], w[nz]
        Rw = R * ww[:, None]
        tp, bp = solve_moments((Zp * ww[:, None]).T @ Zp, Zp.T @ Rw, n, ww @ Zp, Rw.sum(0),
                               d.intercept, d.ridge_pre)
        tf, bf = solve_moments((Zf * ww[:, None]).T @ Zf, Zf.T @ Rw, n, ww @ Zf, Rw.sum(0),
                               d.intercept, d.ridge_ft)
        w_ev = (np.bincount(rng.integers(0, n_ev, n_ev), minlength=n_ev).astype(np.float64)
                if need_r2 else None)
        di, dr2 = _stats(d, tp, bp, tf, bf, need_r2, w_ev=w_ev)
        out[b] = dr2 if need_r2 else di
        if progress is not None:
            progress()
    a = (1 - level) / 2
    lo, hi = np.quantile(out, [a, 1 - a], axis=0)
    return lo, hi


def add_permutations(df, p_perm: np.ndarray):
    """The exchangeability permutation test's own columns (never q_bh, the default test's)."""
    df["p_perm"] = p_perm
    df["q_perm"] = bh_fdr(p_perm)
    return df


def permutation_resolution(n_perm: int, m: int, alpha: float = 0.05) -> str | None:
    """A warning when n_perm permutations cannot give a single one of m features BH q < alpha.

    The smallest permutation p is 1/(n_perm+1); BH gives the k features tied there
    q = m / (k (n_perm+1)), so q < alpha needs k >= m / (alpha (n_perm+1)) of them; one
    feature alone needs n_perm >= m/alpha - 1."""
    if n_perm <= 0 or m <= 0:
        return None
    need_k = m / (alpha * (n_perm + 1))
    if need_k <= 1:
        return None
    import math

    need_n = math.ceil(m / alpha) - 1
    return (f"with {n_perm} permutations the smallest p_perm is 1/{n_perm + 1}: q_perm < {alpha:g} "
            f"over {m} features needs at least {math.ceil(need_k - 1e-9)} features at that p; "
            f"{need_n} permutations let a single feature reach it")


# ---------------------------------------------------------------- pairing two decoders

def _ids_table(ids, path):
    t = CaseTable(case_id=ids, values=np.zeros((len(ids), 0)), columns=[])
    t.path = path
    return t


def paired_cases(pre, ft, which: str, allow_missing: bool):
    """Row indices (i_pre, i_ft) of the cases both decoders used for `which` (train/eval)."""
    a = _ids_table(getattr(pre, f"{which}_case_id"), f"{pre.path} ({which} cases)")
    b = _ids_table(getattr(ft, f"{which}_case_id"), f"{ft.path} ({which} cases)")
    return align_cases(a, b, allow_missing, names=(pre.path, ft.path))


def shared_eval_r2(pre, ft, i_pre, i_ft, bulk_pre: dict, bulk_ft: dict):
    """Per-feature R^2 of two decoders on the eval cases both used (rows i_pre, i_ft).

    When both used exactly the same cases these are the R^2 decode stored; otherwise they
    are recomputed from `eval/prediction` and `eval/target` (which `bulk_*` must then hold)
    on the shared cases only, so the two numbers compare like with like."""
    if len(i_pre) == len(pre.eval_case_id) == len(ft.eval_case_id):
        return pre.r2, ft.r2
    return (r2_score(bulk_pre["eval/prediction"][i_pre], bulk_pre["eval/target"][i_pre]),
            r2_score(bulk_ft["eval/prediction"][i_ft], bulk_ft["eval/target"][i_ft]))


# ---------------------------------------------------------------- decoders compared
#
# A decoder the steps below compare is a lens.DecodeResult (in memory) or a DEC.h5 read
# back (io.formats.decoder.DecoderFile): both have path, attrs, share_hash, columns,
# column_meta, theta, r2, intercept, ridge, train_case_id, eval_case_id, r2_direct,
# r2_seeds, and arrays(names) for the per-case arrays (read only when asked for).

def _quiet(*args, **kwargs) -> None:
    return None


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _no_progress(total=None, desc=None, unit="it"):
    return _NoBar()


def checkpoint_labels(paths: list[str], labels: str | list[str] | None = None) -> list[str]:
    """One label per compared decoder: `labels` (a list or comma-separated), or each file's
    name without extension (`-` reads as "stdin")."""
    if labels:
        out = parse_list(labels, "labels") if isinstance(labels, str) else list(labels)
        if len(out) != len(paths):
            raise ParameterError(f"{{labels}} has {len(out)} name(s) for {len(paths)} compared decoder(s)",
                                 "labels")
    else:
        out = ["stdin" if p == "-" else os.path.splitext(os.path.basename(str(p)))[0] for p in paths]
    seen = {}
    for p, lab in zip(paths, out):
        if lab in seen:
            raise ParameterError(f"checkpoint name {lab!r} is given twice ({seen[lab]} and {p}); "
                                 f"name them with {{labels}}", "labels")
        seen[lab] = p
    return out


@dataclass
class DecoderPair:
    """A compared decoder beside the reference, with the rows of the cases both used."""

    ref: object
    other: object
    eval_rows: tuple            # (rows in ref, rows in other) of the shared evaluation cases
    train_rows: tuple | None    # the same for the train cases (when asked for)

    @property
    def full_eval(self) -> bool:
        return len(self.eval_rows[0]) == len(self.ref.eval_case_id) == len(self.other.eval_case_id)

    @property
    def full_train(self) -> bool:
        return len(self.train_rows[0]) == len(self.ref.train_case_id) == len(self.other.train_case_id)

    def eval_arrays(self, names=("eval/squared_error",)) -> tuple[dict, dict]:
        """Per-case eval arrays of both decoders, plus the predictions and targets that
        shared_eval_r2 needs when the two did not use the same cases."""
        names = tuple(names) + (() if self.full_eval else ("eval/prediction", "eval/target"))
        return self.ref.arrays(names), self.other.arrays(names)


def pair_decoders(ref, other, allow_missing: bool = False, allow_different_preprocessing: bool = False,
                  warn=None, train: bool = True) -> DecoderPair:
    """Check that two decoders may be compared (lens.checks.require_compatible) and pair
    their cases (train, when `train`, then eval) on case_id."""
    require_compatible(ref, other, warn=warn, allow_preprocessing=allow_different_preprocessing)
    train_rows = paired_cases(ref, other, "train", allow_missing) if train else None
    eval_rows = paired_cases(ref, other, "eval", allow_missing)
    return DecoderPair(ref=ref, other=other, eval_rows=eval_rows, train_rows=train_rows)


@dataclass
class Comparison:
    """What compare_decoders returns: the DELTA table (one block of rows per compared
    decoder, named in `checkpoint`), the statistic it ranks by, and each block's three
    views (largest gains, largest losses, least changed)."""

    table: object                       # pandas DataFrame, DELTA.csv's rows
    rank_by: str
    views: dict = field(default_factory=dict)   # checkpoint -> three_views(...)

    def views_text(self, ref_name: str | None = None) -> str:
        """The views as text; with several compared decoders each block is headed
        `== <checkpoint> vs <ref_name>`."""
        texts = []
        for name, v in self.views.items():
            head = f"== {name} vs {ref_name}\n" if len(self.views) > 1 else ""
            texts.append(head + format_views(v, self.rank_by))
        return "\n".join(texts)


def check_compare_params(rank_by: str | None = None, stable_quantile: float = 0.5,
                         ci_level: float = 0.95) -> None:
    """ParameterError for a value compare_decoders cannot use."""
    if rank_by is not None and rank_by not in RANK_BY:
        raise ParameterError(f"{{rank_by}} must be one of {', '.join(RANK_BY)}, not {rank_by!r}", "rank_by")
    if not 0.0 <= stable_quantile < 1.0:
        raise ParameterError("{stable_quantile} must be in [0, 1)", "stable_quantile")
    if not 0.0 < ci_level < 1.0:
        raise ParameterError("{ci_level} must be in (0, 1)", "ci_level")


def compare_decoders(ref, others, labels=None, rank_by: str | None = None, bootstrap: int = 0,
                     permutations: int = 0, ci_level: float = 0.95, seed: int = 0,
                     allow_missing: bool = False, allow_different_preprocessing: bool = False,
                     top: int = 5, stable_quantile: float = 0.5, warn=None, info=None,
                     progress=None, null_panel=None, null_delta: float | None = None,
                     centre: str = interval.CENTRE) -> Comparison:
    """Compare each of `others` (a decoder or a list) with the reference decoder `ref`.

    Decoders are lens.DecodeResult objects or DEC.h5 files read back. rank_by: the
    statistic of ranks, views, CIs and p_perm (default: delta_r2, or delta_importance for
    --method paper decoders). bootstrap/permutations: resamples for percentile CIs and
    the permutation test (0: none). top: features per view (0: no views).
    warn/info(message), progress(total=, desc=, unit=) -> bar with update()/close():
    where messages and progress go (default: nowhere).
    Decoders of a symmetric share (0.3.0's default) are compared over their re-splits
    against the interval null |delta_r2_clipped| <= null_delta (lens.interval): null_panel,
    a decoder of a second fine-tuning run of the first compared checkpoint's task, sets
    null_delta; else null_delta, else lens.interval.NULL_DELTA. centre ('median', the
    default, or 'none'): features are tested relative to the checkpoint's common shift
    (the median change over decodable features in each re-split), or as they are."""
    import pandas as pd

    warn, info, progress = warn or _quiet, info or _quiet, progress or _no_progress
    others = list(others) if isinstance(others, (list, tuple)) else [others]
    if not others:
        raise ParameterError("give {others}: at least one decoder to compare with the reference", "others")
    check_compare_params(rank_by, stable_quantile, ci_level)
    names = checkpoint_labels([d.path for d in others], labels)

    symmetric = interval.is_symmetric(ref)
    if rank_by is None:   # the method's statistic
        rank_by = ("delta_r2_clipped" if symmetric else
                   "delta_importance" if ref.attrs.get("method", "paper") == "paper" else "delta_r2")
    if symmetric:
        if bootstrap or permutations:
            raise ParameterError("{bootstrap}/{permutations} apply to calibrated-0.2 and paper "
                                 "decoders; the symmetric lens's test is over its re-splits",
                                 "bootstrap", "permutations")
        null = interval.resolve_null(ref, others, null_panel, null_delta,
                                     allow_different_preprocessing=allow_different_preprocessing,
                                     warn=warn, info=info, centre=centre)
        blocks, views = [], {}
        for other, name in zip(others, names):
            pair_decoders(ref, other, allow_missing, allow_different_preprocessing, warn)
            df = interval.compare_resplit(ref, other, name, rank_by, null, info=info)
            blocks.append(df)
            if top > 0:
                views[name] = three_views(df, top, stable_quantile, rank_by)
        return Comparison(table=pd.concat(blocks, ignore_index=True), rank_by=rank_by, views=views)
    if null_panel is not None or null_delta is not None:
        raise ParameterError("{null_panel}/{null_delta} apply to decoders of a symmetric share",
                             "null_panel", "null_delta")
    if centre != interval.CENTRE:
        raise ParameterError("{centre} applies to decoders of a symmetric share", "centre")
    if permutations:
        msg = permutation_resolution(permutations, len(ref.columns))
        if msg:
            warn(msg)
    blocks, views = [], {}
    for other, name in zip(others, names):
        pair = pair_decoders(ref, other, allow_missing, allow_different_preprocessing, warn)
        df = compare_pair(pair, name, rank_by=rank_by, bootstrap=bootstrap,
                          permutations=permutations, ci_level=ci_level, seed=seed, warn=warn,
                          info=info, progress=progress)
        blocks.append(df)
        if top > 0:
            views[name] = three_views(df, top, stable_quantile, rank_by)
    return Comparison(table=pd.concat(blocks, ignore_index=True), rank_by=rank_by, views=views)


def compare_pair(pair: DecoderPair, name: str, rank_by: str, bootstrap: int = 0, permutations: int = 0,
                 ci_level: float = 0.95, seed: int = 0, warn=None, info=None, progress=None):
    """The DELTA rows of one compared decoder against the reference (see compare_decoders)."""
    warn, info, progress = warn or _quiet, info or _quiet, progress or _no_progress
    pre, ft = pair.ref, pair.other
    (itr_p, itr_f), (iev_p, iev_f) = pair.train_rows, pair.eval_rows
    full_eval, full_train = pair.full_eval, pair.full_train
    if not full_train:
        warn(ParameterMessage("{allow_missing}: importances are those of each decoder's own train "
                              f"cases; refits use the {len(itr_p)} train cases common to both",
                              "allow_missing"))
    bp, bf = pair.eval_arrays()
    if not full_eval:
        warn(ParameterMessage(f"{{allow_missing}}: R^2 recomputed on the {len(iev_p)} eval cases "
                              f"common to both", "allow_missing"))
    r2_pre, r2_ft = shared_eval_r2(pre, ft, iev_p, iev_f, bp, bf)
    p_null = paired_test(bp["eval/squared_error"][iev_p], bf["eval/squared_error"][iev_f])
    df = delta_table(pre.columns, pre.column_meta, pre.theta, ft.theta, r2_pre, r2_ft,
                     rank_by=rank_by, checkpoint=name, p_null=p_null)
    if pre.r2_direct is not None and ft.r2_direct is not None and full_eval:
        df["r2_direct_pre"], df["r2_direct_ft"] = pre.r2_direct, ft.r2_direct
        df["delta_r2_direct"] = ft.r2_direct - pre.r2_direct
    add_seed_columns(df, pre, ft, full_eval, name, info=info)
    n_dec = int(df["decodable"].sum())
    if n_dec < 0.5 * len(df):
        warn(f"{name}: {len(df) - n_dec} of {len(df)} features are not decodable in either "
             f"stage (R^2 <= {DECODABLE_R2:g} in both); they are left out of the gain/loss "
             f"ranks, and the cohort may be too small for the lens")
    if bootstrap or permutations:
        names = ("train/Z", "train/target", "eval/Z", "eval/target")
        bp, bf = pre.arrays(names), ft.arrays(names)
        R_tr, R_ev = bp["train/target"][itr_p], bp["eval/target"][iev_p]
        if (np.abs(R_tr - bf["train/target"][itr_f]).max() > 1e-5
                or np.abs(R_ev - bf["eval/target"][iev_f]).max() > 1e-5):
            raise RadlensError(f"{pre.path} and {ft.path} were decoded against different "
                               f"radiomic values for the same cases; use the same radiomics table")
        data = PairedData(Zp_tr=bp["train/Z"][itr_p], Zf_tr=bf["train/Z"][itr_f], R_tr=R_tr,
                          Zp_ev=bp["eval/Z"][iev_p], Zf_ev=bf["eval/Z"][iev_f], R_ev=R_ev,
                          intercept=pre.intercept, ridge_pre=pre.ridge, ridge_ft=ft.ridge)
        del bp, bf
        if bootstrap:
            bar = progress(total=bootstrap, desc="bootstrap", unit="resample")
            lo, hi = bootstrap_ci(data, bootstrap, seed=seed, rank_by=rank_by, level=ci_level,
                                  progress=lambda: bar.update(1))
            bar.close()
            df[f"{rank_by}_ci_low"], df[f"{rank_by}_ci_high"] = lo, hi
        if permutations:
            bar = progress(total=permutations, desc="permutations", unit="perm")
            p, _ = permutation_test(data, permutations, seed=seed + 1, rank_by=rank_by,
                                    progress=lambda: bar.update(1))
            bar.close()
            add_permutations(df, p)
    n_flag = int((df["q_bh"] < 0.05).sum())
    info(f"{name}: {n_flag} of {len(df)} features changed beyond the null "
         f"(q_bh < 0.05, {DEFAULT_TEST}); mean delta_r2 {float(df['delta_r2'].mean()):+.4f}")
    return df


def add_seed_columns(df, pre, ft, full_eval: bool, name: str, info=None) -> None:
    """delta_r2 across share seeds (fit-share seeds=K): mean, sd, and the mean pairwise
    Spearman correlation of delta_r2 between seeds over decodable features."""
    from scipy.stats import spearmanr

    a, b = pre.r2_seeds, ft.r2_seeds
    if a is None or b is None or a.shape != b.shape or not full_eval:
        return
    D = b - a                                               # (K, p)
    df["delta_r2_mean"], df["delta_r2_sd"] = D.mean(axis=0), D.std(axis=0, ddof=1)
    dec = df["decodable"].to_numpy(dtype=bool)
    K = D.shape[0]
    rhos = [spearmanr(D[i, dec], D[j, dec]).statistic for i in range(K) for j in range(i + 1, K)]
    rho = float(np.mean(rhos)) if rhos and dec.sum() > 2 else float("nan")
    df["delta_r2_seed_spearman"] = rho
    if info:
        info(f"{name}: delta_r2 across {K} share seeds: mean sd {float(D.std(axis=0, ddof=1).mean()):.4f}; "
             f"rank stability (mean Spearman between seeds) {rho:.3f}")

