"""The report's view of several compared checkpoints (compare REF A B ...): a heatmap of the
change by radiomic family x checkpoint, a trajectory when the checkpoints are stages of one
fine-tuning run, and a dendrogram of their change profiles when they are separate tasks."""

from __future__ import annotations


import numpy as np

from radlens_cli.names import family_label
from radlens_cli.report import data as rd, figures as rf
from radlens_cli.report.markup import column_format, esc, table


def change_statistic(delta) -> str:
    """Δr² clipped at 0 (the symmetric lens's statistic) or Δr² when the table has it, else ΔI."""
    if "delta_r2_clipped" in delta.columns and delta["delta_r2_clipped"].notna().any():
        return "delta_r2_clipped"
    return "delta_r2" if "delta_r2" in delta.columns and delta["delta_r2"].notna().any() else "delta_importance"


def family_matrix(delta, stat: str):
    """(families, checkpoints, matrix) of the mean `stat` over each family's decodable features."""
    names = delta.attrs["checkpoints"]
    d = delta[delta["decodable"]] if "decodable" in delta.columns else delta
    fams = sorted(dict.fromkeys(delta["family"]), key=rd.family_key)
    mat = np.full((len(fams), len(names)), np.nan)
    g = d.groupby(["family", "checkpoint"], sort=False)[stat].mean()
    for (f, c), v in g.items():
        mat[fams.index(f), names.index(c)] = v
    return fams, list(names), mat


def checkpoint_order(delta, enc_info, ordered: bool | None, identities: dict | None = None):
    """(ordered?, positions (epoch numbers or 1..n), how it was decided).

    A checkpoint's epoch is the one `finetune --save-every` records in the checkpoint: read
    from the --encoder checkpoint it was embedded with (matched by recorded sha256, or a file
    stem equal to the label: rd.match_encoders), else from compare's record of it (embed
    records the encoder's run and epoch, decode and compare carry them on: identities'
    `finetune`). Only for a DELTA.csv written before radlens recorded them (no `finetune`
    entry at all) is it read from a label like `NAME-epoch003`. Without --ordered/--unordered
    the checkpoints count as ordered when each has an epoch from one run."""
    names = delta.attrs["checkpoints"]
    matched = rd.match_encoders(names, enc_info, identities or {})
    epochs, runs = [], []
    for n in names:
        e = matched[n][0] if n in matched else None
        if e is not None and e.get("epoch") is not None:
            epochs.append(int(e["epoch"]))
            runs.append(e.get("run") or "")
            continue
        ident = (identities or {}).get(n) or {}
        if "finetune" in ident:   # recorded: an encoder with no epoch has none, whatever its label says
            ft = ident["finetune"] if isinstance(ident["finetune"], dict) else {}
            epochs.append(int(ft["epoch"]) if ft.get("epoch") is not None else None)
            runs.append(ft.get("run") or "")
            continue
        parsed = rd.epoch_of_label(n)   # files written before the epoch was recorded
        epochs.append(parsed[1] if parsed else None)
        runs.append(parsed[0] if parsed else None)
    have = all(e is not None for e in epochs)
    one_run = have and len(set(runs)) == 1 and len(set(epochs)) == len(epochs)
    if ordered is None:
        ordered, how = one_run, ("each checkpoint records an epoch of one run" if one_run
                                 else "the checkpoints do not record epochs of one run")
    else:
        how = "--ordered" if ordered else "--unordered"
    pos = epochs if (ordered and one_run) else list(range(1, len(names) + 1))
    return ordered, pos, how, bool(ordered and one_run)


def heatmap(fams, names, mat, stat: str) -> rf.Figure:
    matplotlib, plt = rf._plt()
    lim = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
    lim = lim or 1.0
    with matplotlib.rc_context(rf.RC):
        fig, ax = plt.subplots(figsize=(1.8 + 0.75 * len(names), 0.9 + 0.35 * len(fams)))
        im = ax.imshow(mat, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        # full labels ran into each other: the shared prefix dropped, cut, and turned
        shown = rf.short_labels(names)
        turn = len(names) > 1 and max(len(n) for n in shown) * 0.075 > 0.75
        ax.set_xticks(range(len(names)), shown, rotation=35 if turn else 0,
                      ha="right" if turn else "center", rotation_mode="anchor")
        ax.set_yticks(range(len(fams)), [family_label(f) for f in fams])
        for i in range(len(fams)):
            for j in range(len(names)):
                if np.isfinite(mat[i, j]):
                    ax.text(j, i, f"{mat[i, j]:+.2f}", ha="center", va="center", fontsize=7,
                            color="white" if abs(mat[i, j]) > 0.6 * lim else "black")
        fig.colorbar(im, ax=ax, label=rf.AXIS_LABEL.get(stat, stat).split(" =")[0] + " (family mean)")
        ax.set_title("Change by radiomic family and checkpoint")
        return rf._render(fig, "fig_checkpoints_heatmap", "Change by family and checkpoint",
                          f"Mean {rf.AXIS_LABEL.get(stat, stat)} of each family's decodable features, per compared "
                          f"checkpoint against the reference (red: more decodable, blue: less). Columns: "
                          + ", ".join(names) + ".")


def trajectory(fams, names, pos, mat, stat: str, epochs: bool) -> rf.Figure:
    matplotlib, plt = rf._plt()
    with matplotlib.rc_context(rf.RC):
        fig, ax = plt.subplots(figsize=(5.6, 3.2))
        for i, f in enumerate(fams):
            ax.plot(pos, mat[i], marker="o", ms=3, lw=1.2, label=family_label(f),
                    color=rf.MODALITY_COLOURS[i % len(rf.MODALITY_COLOURS)] if i < 6 else "black")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(pos, [str(p) for p in pos] if epochs else rf.short_labels(names),
                      rotation=0 if epochs else 35, ha="center" if epochs else "right", rotation_mode="anchor")
        ax.set_xlabel("epoch" if epochs else "checkpoint (in the order given)")
        ax.set_ylabel(rf.AXIS_LABEL.get(stat, stat).split(" =")[0] + " (family mean)")
        ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_title("Trajectory over fine-tuning")
        return rf._render(fig, "fig_checkpoints_trajectory", "Trajectory over fine-tuning",
                          f"Mean {rf.AXIS_LABEL.get(stat, stat)} of each family's decodable features against the "
                          f"reference, along the checkpoints of one run: when the encoder started to gain or lose "
                          f"each kind of radiomic information.")


def profiles(delta, stat: str):
    """(names, matrix checkpoints x columns) of `stat`, over columns decodable in some checkpoint;
    a column not decodable in one comparison counts as no change there."""
    names = delta.attrs["checkpoints"]
    keep = delta.loc[delta["decodable"], "column"].unique() if "decodable" in delta.columns else delta["column"].unique()
    d = delta[delta["column"].isin(keep)].copy()
    d.loc[~d["decodable"], stat] = 0.0
    piv = d.pivot(index="checkpoint", columns="column", values=stat).reindex(names)
    return names, piv.fillna(0.0).to_numpy(dtype=float)


def dendrogram(names, prof, stat: str):
    """Average-linkage clustering of the checkpoints' change profiles: correlation distance
    (same direction of change) when no profile is constant, else Euclidean."""
    from scipy.cluster.hierarchy import dendrogram as scipy_dendrogram
    from scipy.cluster.hierarchy import linkage

    metric = "correlation" if (prof.std(axis=1) > 0).all() else "euclidean"
    z = linkage(prof, method="average", metric=metric)
    matplotlib, plt = rf._plt()
    with matplotlib.rc_context(rf.RC):
        fig, ax = plt.subplots(figsize=(5.0, 0.8 + 0.35 * len(names)))
        scipy_dendrogram(z, labels=list(names), orientation="left", ax=ax, color_threshold=0,
                         above_threshold_color="#1f5fa8")
        ax.set_xlabel("1 − Pearson r of the change profiles" if metric == "correlation" else "Euclidean distance")
        ax.set_title("Checkpoints clustered by what they changed")
        fig_ = rf._render(fig, "fig_checkpoints_dendrogram", "Checkpoints clustered by their change profiles",
                          f"Average-linkage clustering of the checkpoints by their per-feature "
                          f"{rf.AXIS_LABEL.get(stat, stat).split(' =')[0]} profiles "
                          f"({'correlation' if metric == 'correlation' else 'Euclidean'} distance): tasks that "
                          f"change the encoder in the same way join early.")
    return fig_, z, metric


def checkpoints_section(rep, delta, enc_info, ordered: bool | None, identities: dict | None = None) -> None:
    stat = change_statistic(delta)
    names = delta.attrs["checkpoints"]
    fams, _, mat = family_matrix(delta, stat)
    is_ordered, pos, how, epochs = checkpoint_order(delta, enc_info, ordered, identities)
    rows = []
    for n in names:
        sub = delta[delta["checkpoint"] == n]
        dec = sub[sub["decodable"]]
        nq = int((sub["q_bh"] < 0.05).sum()) if "q_bh" in sub.columns else "–"
        rows.append([n, len(sub), len(dec), float(dec[stat].mean()) if len(dec) else float("nan"), nq])
    form = column_format([r[3] for r in rows], stat)   # one number format for the column
    rows = [r[:3] + [form(r[3])] + r[4:] for r in rows]
    parts = [f"<p>{len(names)} checkpoints, each compared with the reference (its own BH family). "
             f"Order: {esc(how)}.</p>",
             table(["checkpoint", "features", "decodable", f"mean {stat} (decodable)", "q_bh < 0.05"], rows,
                   txt_cols=(0,)),
             heatmap(fams, names, mat, stat)]
    if is_ordered:
        parts.append(trajectory(fams, names, pos, mat, stat, epochs))
    elif len(names) >= 3:
        _, prof = profiles(delta, stat)
        fig, _, _ = dendrogram(names, prof, stat)
        parts.append(fig)
    else:
        parts.append("<p class='muted'>Two unordered checkpoints: no clustering to show (a dendrogram needs "
                     "three or more).</p>")
    rep.add("checkpoints", "Several checkpoints: what changed where", parts)
