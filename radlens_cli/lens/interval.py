"""Inference of the symmetric lens: over re-splits, against an interval null.

Per feature (or Table-1 group, on its group-mean), D_r = clipped R^2 of the checkpoint
minus clipped R^2 of the reference in re-split r (same share, decoder and test cases).
The R re-splits overlap, so their D_r are correlated and the naive t is far too
liberal; Nadeau & Bengio's (2003) corrected resampled t inflates the variance of the
mean by the test/train ratio:

    se = sqrt((1/R + n_test/n_train) * s^2),   s^2 = var_r(D_r) (ddof 1),

with n_train the cases each pipeline is fitted on (share + decoder) and n_test those it
is read on. The null is an interval, H0: |delta| <= null_delta, because a bounded
read-out (a linear decoder on a fitted projection) cannot be invariant to every bijection
of the embeddings: re-encoding the same information (a second training run, a monotone
per-dimension map) moves decodability by a small amount whatever the cohort size. The
p-value is that of the boundary, one-sided:

    t = (|mean_r D_r| - null_delta) / se,   p = P(T_{R-1} >= t)

(p = 1 when the observed |mean| is within null_delta and se = 0; p = 0 when it is outside
and se = 0). BH over the features (or groups) of one comparison gives q_bh.

Features are tested relative to the checkpoint's common shift (centre 'median', the
default): in each re-split the median of D_r over the features decodable in either
checkpoint (clipped R^2 above CENTRE_MIN_R2) is taken out, and the t above is that of
D_r - shift_r. Re-encoding the same information moves every feature's decodability a
little, much of it together (one encoding is easier to read out overall); measured on
second training runs, testing features as they are flags more of them the larger the
cohort, while the common shift taken out keeps the rate flat (docs/validity.md). The
Table-1 groups are tested the same way (since 0.5: group-mean D_r minus the same shift,
computed over all features): a monotone map moves every group by about the same amount,
which a panel's narrow group null_delta otherwise resolves as change in every group. A
change every feature shares is therefore neither a feature's nor a group's finding: it is
`common_shift` (with its standard error) in the DELTA table and in Table 1, whose
`delta_r2_clipped` keeps the group-mean change as it is. centre 'none' tests D_r as it is
(0.3.0).

null_delta comes from a reference panel when there is one: a second fine-tuning run of the
same task (another seed) decoded with the same SHARE.h5. The difference between the two
runs is re-encoding only, so null_delta_from_panel takes the PANEL_QUANTILE of |mean_r D_r|
between them over decodable features (groups: over groups). Without a panel the default
NULL_DELTA (measured in docs/validity.md) is used.
"""

from __future__ import annotations

import numpy as np

from radlens_cli.errors import ParameterError, check_choice
from radlens_cli.lens.checks import require_compatible
from radlens_cli.lens.fdr import bh_fdr, stars
from radlens_cli.lens.resplit import R2_CLIP

NULL_DELTA = 0.05            # default interval half-width, R^2 units (docs/validity.md)
PANEL_QUANTILE = 0.95
TEST_NAME = "nb_corrected_t_interval"
CENTRES = ("median", "none")
CENTRE = "median"            # features are tested relative to the checkpoint's common shift
CENTRE_MIN_R2 = 0.05         # the common shift is over features with clipped R^2 above this
CENTRE_MIN_FEATURES = 10     # fewer such features: no common shift (0)


def clipped(r2: np.ndarray, clip: float | None = None) -> np.ndarray:
    return np.maximum(np.asarray(r2, dtype=np.float64), R2_CLIP if clip is None else clip)


def corrected_resampled_t(D: np.ndarray, n_train: int, n_test: int, null_delta: float):
    """(mean, se, p) per column of D (R, k): Nadeau-Bengio corrected resampled t of the
    interval null |mean| <= null_delta (module docstring)."""
    from scipy.stats import t as tdist

    D = np.asarray(D, dtype=np.float64)
    R = D.shape[0]
    if R < 2:
        raise ValueError("the corrected resampled t needs at least 2 re-splits")
    if null_delta < 0:
        raise ValueError("null_delta must be >= 0")
    mean = D.mean(axis=0)
    var = D.var(axis=0, ddof=1)
    # the same value in every re-split (to rounding): no spread
    var = np.where(var <= (1e-12 * np.abs(D).max(axis=0)) ** 2, 0.0, var)
    se = np.sqrt((1.0 / R + float(n_test) / float(n_train)) * var)
    excess = np.abs(mean) - float(null_delta)
    p = np.where(excess > 0, 0.0, 1.0)
    ok = se > 0
    p[ok] = tdist.sf(excess[ok] / se[ok], R - 1)
    return mean, se, p


def test_name(centre: str) -> str:
    """The `test` column's value: TEST_NAME, with `_relative` when features are tested
    relative to the common shift."""
    return TEST_NAME + ("_relative" if centre == "median" else "")


def common_shift(D: np.ndarray, r2_pre, r2_ft, centre: str = CENTRE) -> np.ndarray:
    """(R,) the checkpoint's common shift in each re-split: the median of D_r over the
    features whose clipped R^2 (mean over re-splits) exceeds CENTRE_MIN_R2 in either
    checkpoint. Zeros for centre 'none' or with fewer than CENTRE_MIN_FEATURES such
    features (module docstring)."""
    check_choice(centre, CENTRES, "centre")
    D = np.asarray(D, dtype=np.float64)
    if centre == "none":
        return np.zeros(D.shape[0])
    mask = (clipped(r2_pre).mean(axis=0) > CENTRE_MIN_R2) | (clipped(r2_ft).mean(axis=0) > CENTRE_MIN_R2)
    if mask.sum() < CENTRE_MIN_FEATURES:
        return np.zeros(D.shape[0])
    return np.median(D[:, mask], axis=1)


def centred_differences(r2_pre, r2_ft, centre: str = CENTRE) -> tuple[np.ndarray, np.ndarray]:
    """(D, shift): D (R, p) the clipped-R^2 differences r2_ft - r2_pre per re-split and
    shift (R,) the checkpoint's common shift in each (common_shift())."""
    D = clipped(r2_ft) - clipped(r2_pre)
    return D, common_shift(D, r2_pre, r2_ft, centre)


def shift_summary(shift: np.ndarray, n_train: int, n_test: int) -> tuple[float, float]:
    """(mean, corrected resampled standard error) of the per-re-split common shift."""
    mean, se, _ = corrected_resampled_t(np.asarray(shift, dtype=np.float64)[:, None], n_train, n_test, 0.0)
    return float(mean[0]), float(se[0])


def null_delta_from_panel(D_panel: np.ndarray, mask: np.ndarray | None = None,
                          quantile: float = PANEL_QUANTILE) -> float:
    """The interval half-width from a reference panel: the `quantile` of |mean_r D_r|
    over the masked columns, D_panel (R, k) the panel run minus the run it repeats."""
    m = np.abs(np.asarray(D_panel, dtype=np.float64).mean(axis=0))
    if mask is not None:
        m = m[np.asarray(mask, dtype=bool)]
    if not len(m):
        raise ValueError("no column to calibrate null_delta on (none decodable?)")
    return float(np.quantile(m, quantile))


def group_matrix(labels) -> tuple[np.ndarray, np.ndarray]:
    """(group names, (p, g) matrix averaging each group's columns)."""
    labels = np.asarray(labels).astype(str)
    names, inv = np.unique(labels, return_inverse=True)
    M = np.zeros((len(labels), len(names)))
    M[np.arange(len(labels)), inv] = 1.0
    return names, M / M.sum(axis=0)


def delta_resplit_table(columns, meta: dict, r2_pre, r2_ft, imp_pre, imp_ft, n_train: int,
                        n_test: int, null_delta: float, null_delta_source: str,
                        checkpoint: str = "ft", rank_by: str = "delta_r2_clipped",
                        centre: str = CENTRE):
    """The DELTA table of the symmetric lens (pandas DataFrame), one row per column.

    r2_* (R, p): held-out R^2 of each re-split; imp_* (R, p): decoder importances.
    Columns (DELTA_RESPLIT_COLUMNS): r2_pre/r2_ft, the mean over re-splits of held-out R^2,
    and delta_r2 their difference; r2_clipped_pre/_ft and delta_r2_clipped, the same on
    R^2 clipped below at R2_CLIP (the tested and ranked statistic);
    delta_r2_clipped_se, its corrected resampled standard error; common_shift (and its
    standard error), the mean over re-splits of the checkpoint's common shift
    (common_shift(); 0 for centre 'none'); delta_r2_relative = delta_r2_clipped -
    common_shift and its standard error (of D_r minus the re-split's shift); null_delta and
    its source; p_null, q_bh of H0 |delta_r2_relative| <= null_delta (with centre 'none':
    |delta_r2_clipped| <= null_delta); importance_* the mean over re-splits of each
    decoder's ||theta_k|| (each in its own share space)."""
    import pandas as pd

    from radlens_cli.lens.compare import DECODABLE_R2, ranks  # compare and stats import this module at their top (a cycle otherwise)

    r2_pre, r2_ft = np.asarray(r2_pre, float), np.asarray(r2_ft, float)
    D, shift = centred_differences(r2_pre, r2_ft, centre)
    mean, se, _ = corrected_resampled_t(D, n_train, n_test, null_delta)
    rel, rel_se, p = corrected_resampled_t(D - shift[:, None], n_train, n_test, null_delta)
    shift_mean, shift_se = shift_summary(shift, n_train, n_test)
    p_cols = len(columns)
    df = pd.DataFrame({"checkpoint": [checkpoint] * p_cols, "column": list(columns)})
    for k in ("modality", "image_type", "family", "feature"):
        df[k] = np.asarray(meta.get(k, [""] * p_cols), dtype=object)
    df["r2_pre"], df["r2_ft"] = r2_pre.mean(axis=0), r2_ft.mean(axis=0)
    df["delta_r2"] = df["r2_ft"] - df["r2_pre"]
    df["r2_clipped_pre"], df["r2_clipped_ft"] = clipped(r2_pre).mean(axis=0), clipped(r2_ft).mean(axis=0)
    df["delta_r2_clipped"] = mean
    df["delta_r2_clipped_se"] = se
    df["common_shift"] = shift_mean
    df["common_shift_se"] = shift_se
    df["delta_r2_relative"] = rel
    df["delta_r2_relative_se"] = rel_se
    ip, ifd = np.asarray(imp_pre, float).mean(axis=0), np.asarray(imp_ft, float).mean(axis=0)
    df["importance_pre"], df["importance_ft"], df["delta_importance"] = ip, ifd, ifd - ip
    dec = (df["r2_clipped_pre"].to_numpy() > max(DECODABLE_R2, R2_CLIP)) | \
          (df["r2_clipped_ft"].to_numpy() > max(DECODABLE_R2, R2_CLIP))
    df["decodable"] = dec
    df["null_delta"] = float(null_delta)
    df["null_delta_source"] = null_delta_source
    df["p_null"] = p
    df["q_bh"] = bh_fdr(p)
    df["test"] = test_name(centre)
    df["n_resplits"] = int(D.shape[0])
    g, lo = ranks(df[rank_by].to_numpy(), dec)
    df["rank_gain"] = pd.array(np.where(np.isnan(g), pd.NA, g), dtype="Int64")
    df["rank_loss"] = pd.array(np.where(np.isnan(lo), pd.NA, lo), dtype="Int64")
    return df[DELTA_RESPLIT_COLUMNS]


DELTA_RESPLIT_COLUMNS = ["checkpoint", "column", "modality", "image_type", "family", "feature",
                         "r2_pre", "r2_ft", "delta_r2", "r2_clipped_pre", "r2_clipped_ft",
                         "delta_r2_clipped", "delta_r2_clipped_se", "common_shift",
                         "common_shift_se", "delta_r2_relative", "delta_r2_relative_se",
                         "importance_pre",
                         "importance_ft", "delta_importance", "decodable", "null_delta",
                         "null_delta_source", "p_null", "q_bh", "test", "n_resplits",
                         "rank_gain", "rank_loss"]

STATS_RESPLIT_COLUMNS = ["checkpoint", "group_by", "group", "n_features", "mse_pre", "r2_pre",
                         "mse_ft", "r2_ft", "r2_clipped_pre", "r2_clipped_ft",
                         "delta_r2_clipped", "delta_r2_clipped_se", "common_shift",
                         "common_shift_se", "delta_r2_relative", "delta_r2_relative_se", "null_delta",
                         "null_delta_source", "p_null", "test", "n_resplits", "stars", "q_bh"]


def group_deltas(r2_pre, r2_ft, labels) -> tuple[np.ndarray, np.ndarray]:
    """(group names, (R, g) group-mean clipped-R^2 difference per re-split)."""
    names, M = group_matrix(labels)
    return names, (clipped(r2_ft) - clipped(r2_pre)) @ M


def group_resplit_stats(r2_pre, r2_ft, mse_pre, mse_ft, meta: dict, n_train: int, n_test: int,
                        null_delta: float, null_delta_source: str, by, checkpoint: str = "ft",
                        centre: str = CENTRE, shift=None):
    """Table 1 of the symmetric lens: per group, the mean over re-splits of the group's
    MSE and mean R^2 (raw and clipped), the group-mean clipped-R^2 change
    (delta_r2_clipped) and the checkpoint's common shift, and the corrected resampled t of
    the group-mean change relative to the common shift (delta_r2_relative; as it is for
    centre 'none') against |delta| <= null_delta; q_bh over the whole table.
    shift: (R,) the common shift per re-split (default: common_shift() of these columns;
    group_resplit passes the one of all columns, as the features are tested)."""
    import pandas as pd

    from radlens_cli.lens.stats import group_labels  # compare and stats import this module at their top (a cycle otherwise)

    check_choice(centre, CENTRES, "centre")
    D_all = clipped(r2_ft) - clipped(r2_pre)
    shift = common_shift(D_all, r2_pre, r2_ft, centre) if shift is None else np.asarray(shift, dtype=np.float64)
    shift_mean, shift_se = shift_summary(shift, n_train, n_test)
    rows = []
    for grouping in by:
        names, M = group_matrix(group_labels(meta, grouping))
        counts = np.round(1.0 / M.max(axis=0)).astype(int)
        D = D_all @ M
        mean, se, _ = corrected_resampled_t(D, n_train, n_test, null_delta)
        rel, rel_se, p = corrected_resampled_t(D - shift[:, None], n_train, n_test, null_delta)
        vals = {k: (np.asarray(v, float) @ M).mean(axis=0) for k, v in
                (("mse_pre", mse_pre), ("mse_ft", mse_ft), ("r2_pre", r2_pre), ("r2_ft", r2_ft),
                 ("r2_clipped_pre", clipped(r2_pre)), ("r2_clipped_ft", clipped(r2_ft)))}
        for g, name in enumerate(names):
            rows.append({"checkpoint": checkpoint, "group_by": grouping,
                         "group": str(name) or "(none)", "n_features": int(counts[g]),
                         **{k: float(v[g]) for k, v in vals.items()},
                         "delta_r2_clipped": float(mean[g]), "delta_r2_clipped_se": float(se[g]),
                         "common_shift": shift_mean, "common_shift_se": shift_se,
                         "delta_r2_relative": float(rel[g]), "delta_r2_relative_se": float(rel_se[g]),
                         "null_delta": float(null_delta), "null_delta_source": null_delta_source,
                         "p_null": float(p[g]), "test": test_name(centre), "n_resplits": int(D.shape[0])})
    df = pd.DataFrame(rows, columns=[c for c in STATS_RESPLIT_COLUMNS if c not in ("stars", "q_bh")])
    df["q_bh"] = bh_fdr(df["p_null"].to_numpy())
    df["stars"] = stars(df["q_bh"].to_numpy())
    return df[STATS_RESPLIT_COLUMNS]


def panel_null_deltas(r2_run, r2_panel, meta: dict | None = None, by=(),
                      centre: str = CENTRE) -> tuple[float, float | None]:
    """(feature null_delta, group null_delta) from a reference panel: r2_run (R, p) of a
    fine-tuned checkpoint and r2_panel (R, p) of a second run of the same fine-tuning
    (another seed), decoded with the same SHARE. Features: the PANEL_QUANTILE of
    |mean_r (D_r - shift_r)| over the features decodable in either run, shift_r the
    panel's common shift against the run (common_shift(); 0 for centre 'none'), as the
    features are tested; groups: of the group-mean |mean_r (D_r - shift_r)| (as groups are
    tested) over every group of the groupings `by` (None without groupings)."""
    from radlens_cli.lens.stats import group_labels  # compare and stats import this module at their top (a cycle otherwise)

    D, shift = centred_differences(r2_run, r2_panel, centre)
    dec = (clipped(r2_run).mean(axis=0) > 0) | (clipped(r2_panel).mean(axis=0) > 0)
    feature = null_delta_from_panel(D - shift[:, None], dec if dec.any() else None)
    if not by:
        return feature, None
    means = np.concatenate([np.abs(((D - shift[:, None]) @ group_matrix(group_labels(meta, g))[1]).mean(axis=0))
                            for g in by])
    return feature, float(np.quantile(means, PANEL_QUANTILE))


def rank_agreement(delta_a, delta_b, mask=None) -> float:
    """Spearman correlation of two checkpoints' delta (each against the same reference)
    over the masked features (NaN with fewer than 3)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(delta_a, float), np.asarray(delta_b, float)
    if mask is not None:
        a, b = a[np.asarray(mask, bool)], b[np.asarray(mask, bool)]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


# ---------------------------------------------------------------- decoders in, tables out

def is_symmetric(dec) -> bool:
    """A decoder (DecodeResult or DEC.h5 read back) of a symmetric share."""
    return str(dec.attrs.get("method")) == "symmetric"


def resolve_null(ref, others, null_panel=None, null_delta: float | None = None, by=(),
                 allow_different_preprocessing: bool = False, warn=None, info=None,
                 centre: str = CENTRE) -> dict:
    """The interval null of a comparison: {"delta", "group_delta", "source", "panel",
    "centre"}.

    null_panel: a decoder of a second fine-tuning run of the first of `others`' task
    (another seed, the same SHARE): delta from panel_null_deltas; null_delta: given;
    neither: NULL_DELTA ("default"). centre: how features are tested (common_shift())."""
    check_choice(centre, CENTRES, "centre")
    if null_panel is not None and null_delta is not None:
        raise ParameterError("give {null_panel} or {null_delta}, not both", "null_panel", "null_delta")
    if null_delta is not None:
        if null_delta < 0:
            raise ParameterError("{null_delta} must be >= 0", "null_delta")
        return {"delta": float(null_delta), "group_delta": float(null_delta), "source": "given",
                "panel": None, "centre": centre}
    if null_panel is None:
        return {"delta": NULL_DELTA, "group_delta": NULL_DELTA, "source": "default", "panel": None,
                "centre": centre}
    first = others[0]
    for d in (first, null_panel):
        require_compatible(ref, d, warn=warn, allow_preprocessing=allow_different_preprocessing)
    fd, gd = panel_null_deltas(first.resplit["r2"], null_panel.resplit["r2"], ref.column_meta, by,
                               centre)
    import os

    src = f"panel {os.path.basename(str(null_panel.path))} vs {os.path.basename(str(first.path))}"
    if info:
        info(f"null_delta {fd:.4f} (features) from the reference panel ({src}: the "
             f"{PANEL_QUANTILE:g} quantile of |delta_r2_clipped| between the two runs)"
             + (f"; {gd:.4f} for groups" if gd is not None else ""))
    return {"delta": fd, "group_delta": gd if gd is not None else fd, "source": src,
            "panel": null_panel, "centre": centre}


def _sizes(ref) -> tuple[int, int]:
    a = ref.attrs
    return int(a["n_share"]) + int(a["n_decoder_train"]), int(a["n_test"])


def compare_resplit(ref, other, name: str, rank_by: str, null: dict, info=None):
    """The DELTA rows of one compared decoder against the reference, symmetric lens
    (delta_resplit_table; with a panel, null_panel_spearman: the Spearman correlation over
    decodable features of this checkpoint's and the panel run's delta_r2_clipped)."""
    n_train, n_test = _sizes(ref)
    df = delta_resplit_table(ref.columns, ref.column_meta, ref.resplit["r2"], other.resplit["r2"],
                             ref.resplit["importance"], other.resplit["importance"],
                             n_train=n_train, n_test=n_test, null_delta=null["delta"],
                             null_delta_source=null["source"], checkpoint=name, rank_by=rank_by,
                             centre=null["centre"])
    if null["panel"] is not None:
        dp = (clipped(null["panel"].resplit["r2"]) - clipped(ref.resplit["r2"])).mean(axis=0)
        rho = rank_agreement(df["delta_r2_clipped"], dp, df["decodable"])
        df["null_panel_spearman"] = rho
        if info:
            info(f"{name}: rank agreement of delta_r2_clipped with the panel run (Spearman over "
                 f"decodable features) {rho:.3f}")
    if info:
        dec = df["decodable"].to_numpy(dtype=bool)
        mean = float(df["delta_r2_clipped"][dec].mean()) if dec.any() else float("nan")
        relative = null["centre"] == "median"
        info(f"{name}: {int((df['q_bh'] < 0.05).sum())} of {len(df)} features changed by more "
             f"than null_delta={null['delta']:.4g} ({null['source']}; q_bh < 0.05, "
             f"{df['test'].iloc[0]} over {int(df['n_resplits'].iloc[0])} re-splits"
             + (f", relative to the common shift {float(df['common_shift'].iloc[0]):+.4f} "
                f"(se {float(df['common_shift_se'].iloc[0]):.4f})" if relative else "")
             + f"); mean delta_r2_clipped over the {int(dec.sum())} decodable features {mean:+.4f}")
    return df


def group_resplit(ref, other, name: str, by, null: dict, info=None, keep=None):
    """Table 1 rows of one compared decoder against the reference, symmetric lens
    (keep: a mask of the radiomic columns the groups are made of; None: all)."""
    n_train, n_test = _sizes(ref)
    k = slice(None) if keep is None else np.asarray(keep, dtype=bool)
    meta = {key: np.asarray(v)[k] for key, v in ref.column_meta.items()}
    r2_ref, r2_other = ref.resplit["r2"], other.resplit["r2"]
    shift = centred_differences(r2_ref, r2_other, null["centre"])[1]   # over all columns, as compare's
    df = group_resplit_stats(r2_ref[:, k], r2_other[:, k],
                             ref.resplit["mse"][:, k], other.resplit["mse"][:, k], meta,
                             n_train=n_train, n_test=n_test,
                             null_delta=null["group_delta"], null_delta_source=null["source"],
                             by=by, checkpoint=name, centre=null["centre"], shift=shift)
    if info:
        relative = null["centre"] == "median"
        info(f"{name}: {int((df['q_bh'] < 0.05).sum())} of {len(df)} groups changed by more than "
             f"null_delta={null['group_delta']:.4g} ({null['source']}; group-mean "
             f"delta_r2_clipped{' relative to the common shift' if relative else ''}, "
             f"{df['test'].iloc[0] if len(df) else test_name(null['centre'])}, q_bh < 0.05)")
    return df
