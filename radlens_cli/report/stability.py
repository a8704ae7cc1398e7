"""The report's stability section: each listed feature's ICC over perturbed replicates
(`radlens stability`'s icc.csv) and the change statistic plotted against ICC, with the
Spearman rank correlation and its p-value."""

from __future__ import annotations

import numpy as np

from radlens_cli.io.stability import read_icc as read_icc_table
from radlens_cli.lens.stability import stable_columns
from radlens_cli.report.markup import esc, fmt, table
from radlens_cli.report import data as rd
from radlens_cli.report import figures as rf


def read_icc(path: str):
    """icc.csv of `radlens stability` (column, icc, ci_low, ci_high, ...)."""
    return read_icc_table(path)


def attach_icc(delta, icc):
    """delta with an `icc` column (and icc_ci_low/high when icc.csv has them) looked up by column;
    NaN where icc.csv has no such column."""
    out = delta.copy()
    out.attrs = dict(delta.attrs)
    by = icc.set_index("column")
    out["icc"] = out["column"].map(by["icc"]).astype(float)
    for a, b in (("ci_low", "icc_ci_low"), ("ci_high", "icc_ci_high")):
        if a in by.columns:
            out[b] = out["column"].map(by[a]).astype(float)
    return out


def keep_stable(delta, min_icc: float):
    """The rows whose ICC is at least min_icc (a feature without an ICC is left out too)."""
    keep = stable_columns(dict(zip(delta["column"], delta["icc"])), delta["column"], min_icc)
    out = delta[keep].reset_index(drop=True)
    out.attrs = dict(delta.attrs)
    return out


def rank_association(icc, change):
    """Spearman rho between ICC and a change statistic over the features having both, its
    two-sided p-value and the number of features."""
    from scipy.stats import spearmanr

    x, y = np.asarray(icc, dtype=float), np.asarray(change, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    n = int(ok.sum())
    if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan"), float("nan"), n
    res = spearmanr(x[ok], y[ok])
    return float(res.statistic), float(res.pvalue), n


def icc_figure(delta, stat: str):
    """The change statistic against ICC, every feature, coloured by modality."""
    if stat not in delta.columns or not delta["icc"].notna().any():
        return None
    rho, p, n = rank_association(delta["icc"], delta[stat])
    matplotlib, plt = rf._plt()
    with matplotlib.rc_context(rf.RC):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for i, m in enumerate(dict.fromkeys(delta["modality"])):
            sub = delta[delta["modality"] == m]
            ax.scatter(sub["icc"], sub[stat], s=8, alpha=0.7, lw=0,
                       color=rf.MODALITY_COLOURS[i % len(rf.MODALITY_COLOURS)], label=m or "(none)")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_xlabel("ICC(1,1) over perturbed replicates")
        ax.set_ylabel(rd.stat_label(stat))
        ax.legend(frameon=False, markerscale=2)
        ax.set_title(f"{rd.stat_label(stat)} vs stability: Spearman rho {rho:.2f} (p {p:.2g}, n {n})")
        return rf._render(fig, "fig_stability", f"{rd.stat_label(stat)} vs ICC",
                          f"Each point is a radiomic feature with an ICC. Spearman rank correlation between ICC and "
                          f"{rd.stat_label(stat)}: rho = {rho:.3f}, two-sided p = {p:.3g}, over {n} features. A "
                          f"positive rho: features that lost decodability are the less stable ones (and gained "
                          f"ones the more stable).")


def stability_section(rep, delta, gains, losses, stat: str, min_icc: float | None, n_left_out: int,
                      icc_path: str) -> None:
    """Each listed (gained, lost) feature's ICC and the change-vs-ICC plot."""
    stat = stat or ("delta_r2" if "delta_r2" in delta.columns else "delta_importance")
    rho, p, n = rank_association(delta["icc"], delta[stat]) if stat in delta.columns else (np.nan, np.nan, 0)
    threshold = 0.75 if min_icc is None else min_icc
    rows = []
    for view, df in (("gain", gains), ("loss", losses)):
        for _, r in (df if df is not None else delta.iloc[:0]).iterrows():
            icc = r.get("icc", np.nan)
            ci = (f"[{fmt(r['icc_ci_low'])}, {fmt(r['icc_ci_high'])}]" if "icc_ci_low" in r.index
                  and np.isfinite(r.get("icc_ci_low", np.nan)) else "")
            rows.append([view, r["column"], fmt(r.get(stat, np.nan)), fmt(icc), ci,
                         "yes" if np.isfinite(icc) and icc >= threshold else "no"])
    listed = [rw for rw in rows]
    passing = sum(rw[-1] == "yes" for rw in listed)
    intro = (f"<p>ICC(1,1) of each radiomic feature over perturbed replicates of the cohort (from "
             f"{esc(icc_path)}; <code>radlens perturb</code> and <code>radlens stability</code>). "
             f"{passing} of the {len(listed)} listed gained/lost features have ICC &ge; {threshold:g}. "
             f"Spearman rank correlation between ICC and {esc(rd.stat_label(stat))} over {n} features: "
             f"rho = {fmt(rho)}, p = {p:.3g}.</p>")
    if min_icc is not None:
        intro += (f"<p>With --min-icc {min_icc:g}: {n_left_out} feature(s) with a lower (or no) ICC are left out "
                  f"of the views above.</p>")
    header = ["view", "feature", rd.stat_label(stat), "ICC", "ICC 95% CI", f"ICC ≥ {threshold:g}"]
    rep.add("stability", "Stability of the features (ICC over perturbations)",
            [intro, table(header, rows, txt_cols=(0, 1, 4, 5)), icc_figure(delta, stat)])


CONTROL_FACTOR = 0.5  # READII / issue 28: a control "reads as nothing" when R² at most halves


def control_rows(real, control):
    """Per modality and family: the pre-trained decoders' R² on the real run and on the
    negative control (stats' modality_family rows of each table, matched on modality and
    family), and control / real (R² below 0 counted as 0; empty where the real run's R² is
    not above 0). Returns a DataFrame modality, family, r2_real, r2_control, ratio."""
    import pandas as pd

    a, b = rd.modality_family_r2(real, None), rd.modality_family_r2(control, None)
    if a is None or b is None:
        return None
    a = a.drop_duplicates(["modality", "family"]).rename(columns={"r2_pre": "r2_real"})
    b = b.drop_duplicates(["modality", "family"]).rename(columns={"r2_pre": "r2_control"})
    out = pd.merge(a[["modality", "family", "r2_real"]], b[["modality", "family", "r2_control"]],
                   on=["modality", "family"], how="inner")
    real_pos = np.clip(out["r2_real"].to_numpy(float), 0.0, None)
    ctrl_pos = np.clip(out["r2_control"].to_numpy(float), 0.0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["ratio"] = np.where(real_pos > 0, ctrl_pos / np.where(real_pos > 0, real_pos, 1.0), np.nan)
    return out


def control_section(rep, real, control, control_path: str) -> None:
    """The negative control beside the real run: each modality x family's pre-trained R²."""
    rows_df = control_rows(real, control)
    intro = (f"<p>Negative control: {esc(control_path)}, stats' table of the same pipeline run on negative-control "
             f"images (<code>radlens perturb --negative-control shuffled-roi</code>: the ROI's voxels permuted, its "
             f"histogram and size kept, its texture destroyed). R² is the pre-trained decoders' mean R² per group "
             f"(Table 1's R² pre). A texture family that reads as nothing on the control keeps at most "
             f"{CONTROL_FACTOR:g} of its R² (R² below 0 counted as 0); one that keeps more is read through the ROI's "
             f"histogram and size, not its texture, and a finding about it is a first-order finding. First order "
             f"keeps its values under shuffling, so its R² is expected to stay (docs/stability.md).</p>")
    if rows_df is None or not len(rows_df):
        rep.add("control", "Negative control",
                [intro, "<p>No modality x family rows in both stats tables: nothing to set side by side.</p>"])
        return
    rows = []
    for _, r in rows_df.iterrows():
        ratio = r["ratio"]
        verdict = ("" if not np.isfinite(ratio) else
                   f"reads as nothing (≤ {CONTROL_FACTOR:g})" if ratio <= CONTROL_FACTOR else "kept")
        rows.append([r["modality"], r["family"], fmt(r["r2_real"]), fmt(r["r2_control"]),
                     fmt(ratio) if np.isfinite(ratio) else "", verdict])
    texture = rows_df[(rows_df["family"] != "firstorder") & (rows_df["family"] != "shape") & rows_df["ratio"].notna()]
    kept = texture[texture["ratio"] > CONTROL_FACTOR]
    summary = (f"<p>{len(texture) - len(kept)} of the {len(texture)} texture groups (modality x family, with R² above "
               f"0 on the real run) read as nothing on the control"
               + (": not " + ", ".join(esc(f"{m} {f}") for m, f in zip(kept["modality"], kept["family"]))
                  + " (more than half kept)." if len(kept) else ".") + "</p>")
    header = ["modality", "family", "R² real run", "R² control", "control / real", "on the control"]
    rep.add("control", "Negative control", [intro, summary, table(header, rows, txt_cols=(0, 1, 5))])
