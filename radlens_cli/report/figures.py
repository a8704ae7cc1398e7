"""The report's figures: matplotlib on the Agg backend, fixed rcParams, PNG without a
Software/date stamp, so the same inputs give the same bytes."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError
from radlens_cli.io.files import atomic_output
from radlens_cli.names import family_label
from radlens_cli.report.data import family_key

PRE, FT = "#8c9bb0", "#1f5fa8"
GAIN, LOSS, STABLE = "#2e8b57", "#c0392b", "#7f7f7f"
R2_FLOOR = -1.0  # R² bars are cut here: a badly decoded group would squash the rest
MODALITY_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")

RC = {
    "backend": "Agg", "figure.dpi": 100, "savefig.dpi": 110, "font.family": "DejaVu Sans",
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "svg.hashsalt": "radlens", "path.simplify": True, "figure.autolayout": False,
}


@dataclass
class Figure:
    name: str        # file stem, e.g. fig2_r2_modality_family
    title: str
    caption: str
    png: bytes
    width: int
    height: int


def write_figures(figures: list, folder: str, force: bool = False) -> None:
    """Each Figure as <folder>/<name>.png (the report's --figures), each written atomically."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ParameterError(f"{{figures}} is a file, not a folder: {folder}", "figures", exit_code=EXIT_DATA)
    os.makedirs(folder, exist_ok=True)
    for fig in figures:
        with atomic_output(os.path.join(folder, fig.name + ".png"), force, suffix=".png") as tmp:
            with open(tmp, "wb") as fh:
                fh.write(fig.png)


def short_labels(names, width: int = 18) -> list[str]:
    """Checkpoint labels that fit under a heatmap column: the part they all share (a common
    prefix such as `dec-ft-volume-`) dropped, then cut to `width` with an ellipsis; the
    caption and tables keep the full names."""
    names = [str(n) for n in names]
    if len(names) > 1:
        import os

        common = os.path.commonprefix(names)
        cut = max(common.rfind(c) for c in "-_.") + 1 if any(c in common for c in "-_.") else 0
        if 0 < cut and all(len(n) > cut for n in names):
            names = ["…" + n[cut:] for n in names]
    return [n if len(n) <= width else n[: width - 1] + "…" for n in names]


def wrap_title(text: str, width: int = 60) -> str:
    """A title on as many lines as it needs, so long names never run into a neighbour."""
    import textwrap

    return "\n".join(textwrap.wrap(str(text), width, break_long_words=True, break_on_hyphens=False)) or str(text)


def integer_ticks(axis) -> None:
    """Whole-number ticks (epochs): no 1.5 or 2.5."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _render(fig, name, title, caption) -> Figure:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    png = buf.getvalue()
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    return Figure(name, title, caption, png, w, h)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return matplotlib, plt


def r2_by_modality_family(mf) -> Figure | None:
    """The paper's Fig. 2: R² per family, one panel per modality, pre vs fine-tuned bars."""
    if mf is None or not len(mf):
        return None
    matplotlib, plt = _plt()
    modalities = list(dict.fromkeys(mf["modality"]))
    families = sorted(dict.fromkeys(mf["family"]), key=family_key)
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, len(modalities), figsize=(2.2 + 2.0 * len(modalities) * max(1, len(families)) / 6, 3.0),
                                 sharey=True, squeeze=False)
        lo = max(R2_FLOOR, min(0.0, float(np.nanmin(mf[["r2_pre", "r2_ft"]].to_numpy()))))
        for ax, m in zip(axes[0], modalities):
            sub = mf[mf["modality"] == m].set_index("family")
            x = np.arange(len(families))
            pre = [sub["r2_pre"].get(f, np.nan) for f in families]
            ft = [sub["r2_ft"].get(f, np.nan) for f in families]
            ax.bar(x - 0.2, np.fmax(pre, R2_FLOOR), 0.4, color=PRE, label="pre-trained")
            ax.bar(x + 0.2, np.fmax(ft, R2_FLOOR), 0.4, color=FT, label="fine-tuned")
            ax.set_xticks(x, [family_label(f) for f in families], rotation=45, ha="right")
            ax.set_title(m or "(all)")
            ax.axhline(0, color="black", lw=0.6)
            ax.set_ylim(lo - 0.05 if lo < 0 else 0, 1.0)
            if lo <= R2_FLOOR:
                ax.axhline(R2_FLOOR, color="grey", lw=0.6, ls=":")
        axes[0][0].set_ylabel("R² (mean over features)")
        axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        fig.suptitle("Decodability of radiomic families from the embeddings, by modality", y=1.02)
        return _render(fig, "fig2_r2_modality_family", "R² by modality and family",
                       "Held-out R² of each radiomic family decoded from the embeddings, per modality, "
                       "pre-trained (grey) vs fine-tuned (blue); the paper's Fig. 2. Bars below R² = −1 are cut there.")


def r2_by_group(stats, group_by: str, title: str, stars_label: str = "Wilcoxon p") -> Figure | None:
    """Grouped bars of R² pre vs fine-tuned for one group_by of the stats table, with stars."""
    rows = stats[stats["group_by"] == group_by] if stats is not None else None
    if rows is None or not len(rows):
        return None
    if group_by == "family":
        rows = rows.iloc[sorted(range(len(rows)), key=lambda i: family_key(rows["group"].iloc[i]))]
    matplotlib, plt = _plt()
    labels = [family_label(g) if group_by == "family" else g for g in rows["group"]]
    with matplotlib.rc_context(RC):
        fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(rows), 2.8))
        x = np.arange(len(rows))
        ax.bar(x - 0.2, np.fmax(rows["r2_pre"], R2_FLOOR), 0.4, color=PRE, label="pre-trained")
        ax.bar(x + 0.2, np.fmax(rows["r2_ft"], R2_FLOOR), 0.4, color=FT, label="fine-tuned")
        for xi, top, s in zip(x, np.fmax(rows["r2_pre"].fillna(0), rows["r2_ft"].fillna(0)), rows["stars"]):
            if s:
                ax.text(xi, max(top, 0) + 0.02, s, ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, labels, rotation=45 if len(rows) > 4 else 0, ha="right" if len(rows) > 4 else "center")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_ylabel("R²")
        ax.set_title(title)
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        return _render(fig, f"fig_r2_by_{group_by}", title,
                       f"Group R² (mean of per-feature R²) by {group_by.replace('_', ' ')}, with the stars of Table 1 "
                       f"({stars_label}); bars below R² = −1 are cut there.")


def _label(row) -> str:
    return str(row["column"])


AXIS_LABEL = {"delta_importance": "ΔI = I_ft − I_pre", "delta_r2": "Δr² = r²_ft − r²_pre (held out)",
              "delta_r2_mean": "mean Δr² across share seeds", "delta_importance_mean": "mean ΔI across share seeds"}
PANEL_TITLE = {"delta_importance": "importance change", "delta_r2": "decodability change",
               "delta_r2_mean": "decodability change (seed mean)", "delta_importance_mean": "importance change (seed mean)"}


def delta_view(rows, view: str, colour: str, stats, ci: dict) -> Figure | None:
    """Fig. 3's right side: one panel of horizontal bars per statistic in `stats` (the ranking
    statistic first), each with its own bootstrap interval when `ci` has one for it. An interval
    whose statistic the compare table does not name is never drawn."""
    stats = [s for s in stats if s in rows.columns and rows[s].notna().any()]
    if rows is None or not len(rows) or not stats:
        return None
    matplotlib, plt = _plt()
    rows = rows.iloc[::-1]  # largest at the top
    y = np.arange(len(rows))
    n = len(stats)
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, n, figsize=(5.5 + 2.5 * (n - 1), 0.9 + 0.26 * len(rows)),
                                 sharey=True, squeeze=False, gridspec_kw={"width_ratios": [1.3] + [1] * (n - 1)})
        drawn = []
        for k, (ax, stat) in enumerate(zip(axes[0], stats)):
            d = rows[stat].to_numpy(dtype=float)
            xerr = None
            if stat in ci:
                lo = rows[ci[stat][0]].to_numpy(dtype=float)
                hi = rows[ci[stat][1]].to_numpy(dtype=float)
                ok = np.isfinite(lo) & np.isfinite(hi)
                xerr = np.where(ok, np.vstack([np.clip(d - lo, 0, None), np.clip(hi - d, 0, None)]), 0.0)
                drawn.append(AXIS_LABEL.get(stat, stat).split(" =")[0])
            kw = {"color": colour} if k == 0 else {"color": np.where(d >= 0, GAIN, LOSS)}
            ax.barh(y, d, xerr=xerr, ecolor="black", capsize=2, error_kw={"lw": 0.8}, **kw)
            ax.axvline(0, color="black", lw=0.6)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(nbins=4))   # ΔI ticks like -0.125 ran together
            ax.set_xlabel(AXIS_LABEL.get(stat, stat) + (" (bootstrap CI)" if xerr is not None else ""))
            ax.set_title(f"{view}: {PANEL_TITLE.get(stat, stat)}" if k == 0 else PANEL_TITLE.get(stat, stat))
        axes[0][0].set_yticks(y, [_label(r) for _, r in rows.iterrows()])
        slug = view.lower().replace(" ", "_").replace("-", "_")
        names = [AXIS_LABEL.get(s, s).split(" =")[0] for s in stats]
        caption = f"{view}, ranked by {names[0]}: " + "; ".join(
            f"{nm} of each radiomic feature" + (" with its bootstrap confidence interval" if nm in drawn else "")
            for nm in names)
        if "Δr²" in names:
            caption += " (Δr²: green more decodable after fine-tuning, red less)"
        return _render(fig, f"fig3_{slug}", view, caption + ".")


def delta_scatter(delta) -> Figure | None:
    """ΔI against Δr² over all features, coloured by modality: where the two rankings agree."""
    if (delta is None or not {"delta_r2", "delta_importance"} <= set(delta.columns)
            or not delta["delta_r2"].notna().any()):
        return None
    matplotlib, plt = _plt()
    with matplotlib.rc_context(RC):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        for i, m in enumerate(dict.fromkeys(delta["modality"])):
            sub = delta[delta["modality"] == m]
            ax.scatter(sub["delta_importance"], sub["delta_r2"], s=8, alpha=0.7, lw=0,
                       color=MODALITY_COLOURS[i % len(MODALITY_COLOURS)], label=m or "(none)")
        ax.axhline(0, color="black", lw=0.5)
        ax.axvline(0, color="black", lw=0.5)
        ax.set_xlabel("ΔI (importance change)")
        ax.set_ylabel("Δr² (decodability change)")
        ax.legend(frameon=False, markerscale=2)
        ax.set_title("Importance vs decodability change, every feature")
        return _render(fig, "fig_delta_scatter", "ΔI vs Δr²",
                       "Each point is a radiomic feature. Weight-norm importance can grow for features the "
                       "embedding does not encode (least squares fits their noise), so read ΔI beside Δr².")


PAIR_MEANING = {"deep": "deep features with a correlated radiomic feature",
                "pairs": "correlated (deep, radiomic) pairs"}


def pre_ft_bars(df, label_cols, pre: str, ft: str, title: str, name: str) -> Figure | None:
    """Bars of a `<x>_pre` / `<x>_ft` column pair of a generic table (e.g. correlate-summary),
    with the y axis named after what `<x>` counts and a caption saying it in words."""
    if df is None or not len(df):
        return None
    rows = df.head(40)
    labels = [" / ".join(str(r[c]) for c in label_cols) if label_cols else str(i)
              for i, (_, r) in enumerate(rows.iterrows())]
    matplotlib, plt = _plt()
    with matplotlib.rc_context(RC):
        fig, ax = plt.subplots(figsize=(1.5 + 0.32 * len(rows), 3.0))
        x = np.arange(len(rows))
        ax.bar(x - 0.2, rows[pre].astype(float), 0.4, color=PRE, label=pre)
        ax.bar(x + 0.2, rows[ft].astype(float), 0.4, color=FT, label=ft)
        ax.set_xticks(x, labels, rotation=60, ha="right")
        stem = pre[:-4]
        what = PAIR_MEANING.get(stem, stem.replace("_", " "))
        ax.set_ylabel(wrap_title(what, 26))   # what the bars count, on as many lines as it needs
        ax.set_title(title)
        ax.legend(["pre-trained", "fine-tuned"], frameon=False)
        by = " / ".join(label_cols) if label_cols else "row"
        return _render(fig, name, title, f"Number of {what} per {by}: pre-trained ({pre}) vs fine-tuned "
                       f"({ft})" + (" (first 40 rows)" if len(df) > 40 else "") + ".")


def mean_sd_bars(df, title: str, name: str) -> Figure | None:
    """Probe results: the first `<metric>_mean` column (± its `_sd`) per table, one bar per model."""
    import pandas as pd

    means = [c for c in df.columns if c.endswith("_mean") and pd.api.types.is_numeric_dtype(df[c])]
    if df is None or not len(df) or not means or "table" not in df.columns:
        return None
    metric = next((m for m in ("balanced_accuracy_mean", "auc_mean", "r2_mean") if m in means), means[0])
    sd = metric[:-5] + "_sd"
    tables = list(dict.fromkeys(df["table"].astype(str)))
    models = list(dict.fromkeys(df["model"].astype(str))) if "model" in df.columns else [""]
    matplotlib, plt = _plt()
    with matplotlib.rc_context(RC):
        fig, ax = plt.subplots(figsize=(1.6 + 0.9 * len(tables) * max(1, len(models)) / 2, 2.8))
        width = 0.8 / len(models)
        x = np.arange(len(tables))
        for k, m in enumerate(models):
            sub = df[df["model"].astype(str) == m] if m else df
            sub = sub.set_index(sub["table"].astype(str))
            vals = [float(sub[metric].get(t, np.nan)) for t in tables]
            errs = [float(sub[sd].get(t, np.nan)) if sd in sub.columns else 0.0 for t in tables]
            ax.bar(x - 0.4 + width * (k + 0.5), vals, width, yerr=errs, capsize=2, label=m or metric,
                   color=MODALITY_COLOURS[k % len(MODALITY_COLOURS)], error_kw={"lw": 0.8})
        ax.set_xticks(x, tables)
        ax.set_ylabel(metric[:-5].replace("_", " "))
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(title)
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        what = metric[:-5].replace("_", " ")
        protos = set(df["protocol"].astype(str)) if "protocol" in df.columns else set()
        if protos == {"train-test"}:
            how = (f"{what} on the test cases of each model fitted on the train cases (--protocol "
                   f"train-test: one split, so no error bar)")
        elif protos and "train-test" not in protos:
            how = f"cross-validated {what} (mean ± sd over folds; --protocol {', '.join(sorted(protos))})"
        else:
            how = f"{what} (mean, ± sd over folds where the protocol has folds)"
        return _render(fig, name, title, f"{how[:1].upper()}{how[1:]}, per model and feature table.")


def metric_curves(df, title: str, name: str) -> Figure | None:
    """Metrics against `epoch` (finetune --metrics), one panel per metric, one line per split
    when the table is long (an `epoch,split,...` row per split and epoch)."""
    import pandas as pd

    if df is None or "epoch" not in df.columns:
        return None
    skip = {"epoch", "n_cases", "lr", "step"}
    num = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])
           and df[c].notna().sum() > 1][:3]
    if not num:
        return None
    splits = list(dict.fromkeys(df["split"].astype(str))) if "split" in df.columns else [None]
    matplotlib, plt = _plt()
    with matplotlib.rc_context(RC):
        fig, axes = plt.subplots(1, len(num), figsize=(3.0 * len(num) + 0.6, 2.8), squeeze=False)
        for ax, c in zip(axes[0], num):
            for k, sp in enumerate(splits):
                sub = df if sp is None else df[df["split"].astype(str) == sp]
                sub = sub[sub[c].notna()]
                if not len(sub):
                    continue
                style = {"marker": "o" if len(sub) == 1 else ".", "lw": 1,
                         "color": MODALITY_COLOURS[k % len(MODALITY_COLOURS)]}
                ax.plot(sub["epoch"], sub[c], label=sp or c, **style)
            ax.set_xlabel("epoch")
            integer_ticks(ax.xaxis)
            ax.set_title(c)
        axes[0][-1].legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.suptitle(title, y=1.03)
        return _render(fig, name, title, "Fine-tuning metrics per epoch" + (" and split" if splits != [None] else "")
                       + " (a single point: the final test evaluation).")
