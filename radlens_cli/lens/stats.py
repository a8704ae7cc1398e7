"""The paper's Table 1: MSE and R^2 per radiomic group, pre vs fine-tuned, with Wilcoxon.

Group MSE = mean squared error over the group's features and the evaluation cases;
group R^2 = mean of the per-feature R^2; Wilcoxon signed-rank test (two-sided, scipy's
defaults) on each case's squared error averaged over the group's features, pre vs ft;
BH-FDR q-values across the whole table (one comparison), and stars from q_bh
(* q<0.05 ** q<0.01 *** q<0.001; the paper starred raw p). A group whose per-case errors
agree to float32 rounding in every case (the same information after alignment) gets p = 1. Image types are
collapsed (wavelet-LLH -> wavelet) as in the paper's Original / Wavelet rows.
"""

from __future__ import annotations

import numpy as np

from radlens_cli.errors import ParameterError, ParameterMessage
from radlens_cli.lens import interval
from radlens_cli.lens.compare import checkpoint_labels, pair_decoders, shared_eval_r2
from radlens_cli.lens.fdr import bh_fdr, stars
from radlens_cli.lens.names import collapse_image_type
from radlens_cli.names import family_label, parse_list

GROUPINGS = ("family", "image_type", "modality", "modality_family")
STATS_COLUMNS = ["checkpoint", "group_by", "group", "n_features", "mse_pre", "r2_pre", "mse_ft", "r2_ft",
                 "wilcoxon_p", "stars", "q_bh"]


def group_labels(meta: dict, by: str) -> np.ndarray:
    """Per-column group label for one grouping."""
    if by == "family":
        return np.asarray(meta["family"], dtype=object)
    if by == "image_type":
        return collapse_image_type(meta["image_type"])
    if by == "modality":
        return np.asarray(meta["modality"], dtype=object)
    if by == "modality_family":
        return np.array([f"{m}/{f}" for m, f in zip(meta["modality"], meta["family"])], dtype=object)
    raise ValueError(f"unknown grouping {by!r} (choose {', '.join(GROUPINGS)})")


def group_table(sq_pre: np.ndarray, sq_ft: np.ndarray, r2_pre: np.ndarray, r2_ft: np.ndarray,
                meta: dict, by=GROUPINGS, checkpoint: str = "ft"):
    """One row per (grouping, group); sq_*: (n_cases, p) squared errors on the same cases."""
    import pandas as pd
    from scipy.stats import wilcoxon

    rows = []
    for grouping in by:
        labels = group_labels(meta, grouping)
        names, inv = np.unique(labels.astype(str), return_inverse=True)
        onehot = np.zeros((len(labels), len(names)))
        onehot[np.arange(len(labels)), inv] = 1.0
        counts = onehot.sum(axis=0)
        e_pre = (sq_pre @ onehot) / counts           # (n, g): per-case group mean
        e_ft = (sq_ft @ onehot) / counts
        with np.errstate(invalid="ignore", divide="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p = np.atleast_1d(wilcoxon(e_pre, e_ft, axis=0).pvalue)
        same = (np.abs(e_ft - e_pre) <= 1e-5 * (np.abs(e_pre) + np.abs(e_ft)) + 1e-12).all(axis=0)
        p = np.where(same, 1.0, p)
        for g, name in enumerate(names):
            rows.append({"checkpoint": checkpoint, "group_by": grouping, "group": str(name) or "(none)",
                         "n_features": int(counts[g]),
                         "mse_pre": float(e_pre[:, g].mean()), "r2_pre": float(r2_pre @ onehot[:, g] / counts[g]),
                         "mse_ft": float(e_ft[:, g].mean()), "r2_ft": float(r2_ft @ onehot[:, g] / counts[g]),
                         "wilcoxon_p": float(p[g])})
    df = pd.DataFrame(rows, columns=[c for c in STATS_COLUMNS if c not in ("stars", "q_bh")])
    df["q_bh"] = bh_fdr(df["wilcoxon_p"].to_numpy())
    df["stars"] = stars(df["q_bh"].to_numpy())
    return df[STATS_COLUMNS]



def check_groupings(by) -> list[str]:
    """The groupings of `by` (a list, or comma-separated); ParameterError for an unknown one."""
    groupings = parse_list(by, "by") if isinstance(by, str) else list(by)
    bad = [g for g in groupings if g not in GROUPINGS]
    if bad or not groupings:
        raise ParameterError(f"{{by}}: unknown grouping {', '.join(bad) or '(empty)'} "
                             f"(choose from {', '.join(GROUPINGS)})", "by")
    return groupings


def group_stats(ref, others, labels=None, by=GROUPINGS, allow_missing: bool = False,
                allow_different_preprocessing: bool = False, warn=None, info=None, columns=None,
                null_panel=None, null_delta: float | None = None, centre: str = interval.CENTRE):
    """Table 1 of the reference decoder `ref` against each of `others` (a decoder or a list;
    lens.DecodeResult objects or DEC.h5 files read back): one block of group_table rows
    per compared decoder, on the evaluation cases both used. by: groupings (a list or
    comma-separated) among GROUPINGS. warn/info(message): where messages go. columns: the
    radiomic columns the groups are made of (e.g. the stable ones); None: all.
    Decoders of a symmetric share: lens.interval.group_resplit_stats over the re-splits,
    against the interval null (null_panel / null_delta / centre as in compare_decoders:
    each group-mean change relative to the checkpoint's common shift, or as it is)."""
    import pandas as pd

    groupings = check_groupings(by)
    others = list(others) if isinstance(others, (list, tuple)) else [others]
    if not others:
        raise ParameterError("give {others}: at least one decoder to compare with the reference", "others")
    names = checkpoint_labels([d.path for d in others], labels)
    keep = None if columns is None else np.isin(np.asarray(ref.columns, dtype=str), np.asarray(list(columns), dtype=str))
    if keep is not None and not keep.any():
        raise ParameterError("{columns}: none of the decoders' radiomic columns is among them", "columns")
    meta = ref.column_meta if keep is None else {k: np.asarray(v)[keep] for k, v in ref.column_meta.items()}
    blocks = []
    if interval.is_symmetric(ref):
        null = interval.resolve_null(ref, others, null_panel, null_delta, by=groupings,
                                     allow_different_preprocessing=allow_different_preprocessing,
                                     warn=warn, info=info, centre=centre)
        for other, name in zip(others, names):
            pair_decoders(ref, other, allow_missing, allow_different_preprocessing, warn, train=False)
            blocks.append(interval.group_resplit(ref, other, name, groupings, null, info=info,
                                                 keep=keep))
        return pd.concat(blocks, ignore_index=True)
    if null_panel is not None or null_delta is not None:
        raise ParameterError("{null_panel}/{null_delta} apply to decoders of a symmetric share",
                             "null_panel", "null_delta")
    if centre != interval.CENTRE:
        raise ParameterError("{centre} applies to decoders of a symmetric share", "centre")
    for other, name in zip(others, names):
        pair = pair_decoders(ref, other, allow_missing, allow_different_preprocessing, warn, train=False)
        (ip, jf), full = pair.eval_rows, pair.full_eval
        bp, bf = pair.eval_arrays()
        sq_pre, sq_ft = bp["eval/squared_error"][ip], bf["eval/squared_error"][jf]
        if not full and warn:
            warn(ParameterMessage(f"{{allow_missing}}: using the {len(ip)} eval cases common to both "
                                  f"decoders", "allow_missing"))
        r2_pre, r2_ft = shared_eval_r2(ref, other, ip, jf, bp, bf)
        if keep is not None:
            sq_pre, sq_ft, r2_pre, r2_ft = sq_pre[:, keep], sq_ft[:, keep], r2_pre[keep], r2_ft[keep]
        df = group_table(sq_pre, sq_ft, r2_pre, r2_ft, meta, by=groupings, checkpoint=name)
        if info:
            info(f"{name}: {int((df['q_bh'] < 0.05).sum())} of {len(df)} groups differ "
                 f"(Wilcoxon, q_bh < 0.05)")
        blocks.append(df)
    return pd.concat(blocks, ignore_index=True)


def _display(group_by: str, group: str) -> str:
    if group_by == "family":
        return family_label(group)
    if group_by == "image_type":
        return group[:1].upper() + group[1:]
    if group_by == "modality_family":
        m, _, f = group.partition("/")
        return f"{m} {family_label(f)}"
    return group


def markdown_table(df) -> str:
    """The paper's Table 1 layout: per group a Pre-train and a Fine-tune row, stars on the
    fine-tuned MSE."""
    lines = []
    multi = "checkpoint" in df and df["checkpoint"].nunique() > 1
    for (ck, grouping), sub in df.groupby(["checkpoint", "group_by"], sort=False):
        title = f"**{ck}: by {grouping.replace('_', ' × ')}**" if multi else \
            f"**By {grouping.replace('_', ' × ')}**"
        lines += [title, "",
                  "| Feature | Stage | MSE ↓ | R² ↑ |", "|---|---|---:|---:|"]
        for _, r in sub.iterrows():
            lines.append(f"| {_display(grouping, r['group'])} | Pre-train | {r['mse_pre']:.3f} | "
                         f"{r['r2_pre']:.3f} |")
            st = f" {r['stars']}" if r["stars"] else ""
            lines.append(f"|  | Fine-tune | {r['mse_ft']:.3f}{st} | {r['r2_ft']:.3f} |")
        lines.append("")
    if "null_delta" in df:
        lines.append("Means over the re-splits. Stars: group-mean Δr² (R² clipped below at 0) "
                     "beyond the interval null |Δ| ≤ null_delta "
                     f"({float(df['null_delta'].iloc[0]):.3g}, {df['null_delta_source'].iloc[0]}), "
                     "Nadeau-Bengio corrected resampled t, BH-adjusted over the table: "
                     "* q<0.05, ** q<0.01, *** q<0.001.")
    else:
        lines.append("Stars: Wilcoxon signed-rank on per-case squared errors, BH-adjusted over "
                     "the table: * q<0.05, ** q<0.01, *** q<0.001.")
    return "\n".join(lines) + "\n"
