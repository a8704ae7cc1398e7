"""Assembling the report: one HTML file with its figures embedded as base64 PNG, no scripts
and no external assets, so it opens offline and can be mailed as is."""

from __future__ import annotations

import base64
import html as _html
import json
import os

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError
from radlens_cli.lens.compare import three_views
from radlens_cli.names import family_label
from radlens_cli.io.files import shown_name
from radlens_cli.provenance import decoded_attrs, json_attr
from radlens_cli.report import checkpoints as rc, data as rd, figures as rf, images as ri, stability as rs
from radlens_cli.report.markup import column_format, esc, fmt, fmt_p, table
from radlens_cli.report.saliency import saliency_section

CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.4em}nav ol{columns:2}table.data{border-collapse:collapse;font-size:.85em;margin:.6em 0}
table.data th,table.data td{border:1px solid #ccc;padding:2px 7px;text-align:right}
table.data th{background:#f0f2f5}table.data td.txt,table.data th.txt{text-align:left}
table.data td.long{min-width:16em;max-width:26em;overflow-wrap:anywhere}
tr.ft td{border-bottom:2px solid #999}figure{margin:1em 0}figure img{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#555}.muted{color:#666;font-size:.85em}code{font-size:.9em}
.kpi{display:inline-block;border:1px solid #ddd;border-radius:6px;padding:.4em .8em;margin:.2em;
background:#fafbfc}.kpi b{display:block;font-size:1.3em}.warn{background:#fff4e5;border-left:4px solid #e67e22;padding:.3em .6em}.scroll{overflow-x:auto}
"""


def _num(series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(series)) and not pd.api.types.is_bool_dtype(series)


def generic_table(df, max_rows: int = 60) -> str:
    """Any CSV as a table: the `command` provenance column is left out and long paths are
    shown by their file name (the full path in the Provenance section's inputs)."""
    df = df.drop(columns=[c for c in df.columns if c == "command"])
    txt = tuple(i for i, c in enumerate(df.columns) if not _num(df[c]))

    def cell(v):
        if isinstance(v, str) and len(v) > 40 and ("/" in v or os.sep in v) and " " not in v.strip():
            return os.path.basename(v.rstrip("/")) or v
        return fmt(v)

    head = df.head(max_rows)
    forms = [column_format(head[c].tolist(), c) if _num(df[c]) else None for c in df.columns]
    rows = [[cell(v) if f is None else f(v) for v, f in zip(r, forms)]
            for r in head.itertuples(index=False)]
    more = (f'<p class="muted">First {max_rows} of {len(df)} rows.</p>' if len(df) > max_rows else "")
    return table(list(df.columns), rows, txt_cols=txt) + more


def figure_html(fig: rf.Figure) -> str:
    b64 = base64.b64encode(fig.png).decode("ascii")
    return (f'<figure id="{esc(fig.name)}"><img src="data:image/png;base64,{b64}" alt="{esc(fig.title)}" '
            f'width="{fig.width}" height="{fig.height}"><figcaption>{esc(fig.caption)}</figcaption></figure>')


class Report:
    def __init__(self, title: str):
        self.title = title
        self.sections: list[tuple[str, str, str]] = []  # id, heading, body
        self.figures: list[rf.Figure] = []

    def add(self, sid: str, heading: str, parts) -> None:
        body = []
        for p in parts:
            if p is None:
                continue
            if isinstance(p, rf.Figure):
                self.figures.append(p)
                body.append(figure_html(p))
            else:
                body.append(p)
        self.sections.append((sid, heading, "\n".join(body)))

    def render(self, intro: str = "") -> str:
        nav = "".join(f'<li><a href="#{esc(s)}">{esc(h)}</a></li>' for s, h, _ in self.sections)
        secs = "\n".join(f'<section id="{esc(s)}">\n<h2>{esc(h)}</h2>\n{b}\n</section>' for s, h, b in self.sections)
        return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
                f'<meta name="generator" content="radlens report">\n<title>{esc(self.title)}</title>\n'
                f"<style>{CSS}</style>\n</head>\n<body>\n<h1>{esc(self.title)}</h1>\n{intro}\n"
                f'<nav><ol>{nav}</ol></nav>\n{secs}\n</body>\n</html>\n')


# ------------------------------------------------------------------ sections

def _kpis(items) -> str:
    return "<div>" + "".join(f'<span class="kpi"><b>{esc(v)}</b>{esc(k)}</span>' for k, v in items) + "</div>"


def cohort_section(rep: Report, rad: dict, delta) -> None:
    counts = rad["counts"]
    families = sorted({f for c in counts.values() for f in c}, key=rd.family_key)
    rows = [[m] + [counts[m].get(f, 0) for f in families] + [sum(counts[m].values())] for m in counts]
    rows.append(["all"] + [sum(counts[m].get(f, 0) for m in counts) for f in families] + [rad["n_columns"]])
    split = ", ".join(f"{k} {v}" for k, v in rad["split"].items()) or "no split recorded"
    kpi = [("cases", rad["n_cases"]), ("radiomic columns", rad["n_columns"]), ("modalities", len(counts))]
    if delta is not None:
        kpi.append(("features compared", len(delta)))
    params = json_attr(rad["attrs"], "params", {}) or {}
    extra = []
    if isinstance(params, dict) and params:
        shown = {k: params[k] for k in ("modalities", "mask", "params", "reference_modality") if k in params}
        if shown:
            extra.append("<p class='muted'>Extraction: " + esc(", ".join(f"{k}={v}" for k, v in shown.items())) + "</p>")
    rep.add("cohort", "Cohort and radiomic features", [
        _kpis(kpi),
        f"<p>{rad['n_cases']} cases ({esc(split)}); image types: "
        f"{esc(', '.join(rad['image_types']) or 'not recorded')}.</p>",
        table(["modality"] + [family_label(f) for f in families] + ["total"], rows,
              row_classes=[""] * (len(rows) - 1) + ["ft"], caption="Radiomic features per modality and family"),
        *extra])


STARS_TEXT = {"q_bh": "BH-FDR q of the Wilcoxon signed-rank test across the table",
              "wilcoxon_p": "raw Wilcoxon p, not corrected for the table's many groups",
              "file": "as given in the stats table"}


def pd_first(series):
    """The first non-missing value of a column (NaN when none)."""
    v = series.dropna()
    return v.iloc[0] if len(v) else float("nan")


def table1_section(rep: Report, stats, heading_note: str = "") -> None:
    star_src = stats.attrs.get("stars_from", "file")
    interval = "null_delta" in stats.columns and "p_null" in stats.columns   # the symmetric lens
    if interval:
        nd = float(pd_first(stats["null_delta"]))
        src = pd_first(stats["null_delta_source"]) if "null_delta_source" in stats.columns else float("nan")
        src = src if isinstance(src, str) else "source not recorded"
        parts = ["<p>MSE and R² of the radiomic features decoded from the embeddings, means over the lens's "
                 "re-splits (each checkpoint its own share per re-split), pre-trained vs fine-tuned"
                 + esc(heading_note) + ". Group MSE is over the group's features and cases, group R² the mean "
                 "of per-feature R². Test: the group-mean Δr² (R² clipped at 0) against the interval null "
                 f"|Δr²| ≤ δ = {nd:.3g} ({esc(src)}), Nadeau–Bengio corrected resampled t over the re-splits; "
                 "q: BH-FDR across the table. Stars (* &lt;0.05, ** &lt;0.01, *** &lt;0.001) from q.</p>"]
    else:
        parts = ["<p>MSE and R² of the radiomic features decoded from the embeddings on the evaluation "
                 "split, pre-trained vs fine-tuned" + esc(heading_note) + ". Group MSE is over the group's features and "
                 "cases, group R² the mean of per-feature R². Wilcoxon signed-rank test on each case's squared error "
                 "averaged over the group; q: BH-FDR across the table. Stars (* &lt;0.05, ** &lt;0.01, *** &lt;0.001): "
                 f"{esc(STARS_TEXT[star_src])}.</p>"]
    has_mse = {"mse_pre", "mse_ft"} <= set(stats.columns)
    for gb in [g for g in rd.GROUP_BY_ORDER if g != "modality_family"] + sorted(
            set(stats["group_by"]) - set(rd.GROUP_BY_ORDER)):
        sub = stats[stats["group_by"] == gb]
        if not len(sub):
            continue
        if gb == "family":
            sub = sub.iloc[sorted(range(len(sub)), key=lambda i: rd.family_key(sub["group"].iloc[i]))]
        rows, classes = [], []
        for _, r in sub.iterrows():
            name = family_label(r["group"]) if gb == "family" else r["group"]
            n = fmt(r["n_features"]) if "n_features" in r else ""
            rows.append([name, "Pre-train", n, fmt(r.get("mse_pre")) if has_mse else "", fmt(r["r2_pre"]), "", ""])
            rows.append(["", "Fine-tune", "", (fmt(r.get("mse_ft")) + (" " + r["stars"] if r["stars"] else ""))
                         if has_mse else r["stars"], fmt(r["r2_ft"]),
                         fmt_p(r.get("p_null" if interval else "wilcoxon_p", float("nan"))),
                         fmt_p(r.get("q_bh", float("nan")))])
            classes += ["", "ft"]
        parts.append(f"<h3>By {esc(gb.replace('_', ' '))}</h3>")
        parts.append(table(["Group", "Stage", "n features", "MSE ↓", "R² ↑",
                            "p (|Δr²| ≤ δ)" if interval else "Wilcoxon p", "q (BH)"],
                           rows, txt_cols=(0, 1), row_classes=classes))
    label = {"q_bh": "BH q", "wilcoxon_p": "raw Wilcoxon p"}.get(star_src, "as in the stats table")
    parts.append(rf.r2_by_group(stats, "family", "R² by radiomic family", label))
    parts.append(rf.r2_by_group(stats, "image_type", "R² by image type", label))
    rep.add("table1", "Table 1: decoding error and R² by group", parts)


def fig2_section(rep: Report, stats, delta) -> None:
    mf = rd.modality_family_r2(stats, delta)
    if mf is None:
        return
    src = ("stats' modality × family rows" if mf["source"].iloc[0] == "stats"
           else "per-feature R² of the compare table averaged per modality and family")
    best = mf.sort_values("r2_ft", ascending=False).head(3)
    best_txt = "; ".join(f"{r.modality} {family_label(r.family)} R² {fmt(r.r2_pre)} → {fmt(r.r2_ft)}"
                         for r in best.itertuples())
    rows = [[r.modality, family_label(r.family), fmt(r.r2_pre), fmt(r.r2_ft), fmt(r.r2_ft - r.r2_pre)]
            for r in mf.itertuples()]
    rep.add("fig2", "R² by modality and family (Fig. 2)", [
        f"<p>From {esc(src)}. Highest after fine-tuning: {esc(best_txt)}.</p>",
        rf.r2_by_modality_family(mf),
        "<details><summary>Values</summary>" + table(["modality", "family", "R² pre", "R² ft", "ΔR²"], rows,
                                                      txt_cols=(0, 1)) + "</details>"])


def views(delta, top: int, stable_quantile: float, rank_by: str | None = None):
    """The paper's three views of one checkpoint, as `radlens compare` prints them
    (lens.compare.three_views): largest gains, largest losses, and the least-changed among
    decodable features high in both stages (importance, or R² when ranking by a Δr²
    statistic, above the quantile before and after).

    rank_by None follows compare's own ranking (rank_gain/rank_loss) when the table has it,
    and the stable view uses the statistic those ranks follow. Returns (gains, losses,
    stable, statistic ranked by or None when compare's ranks were used and the statistic
    could not be read from the values)."""
    d = delta[delta["decodable"]] if "decodable" in delta.columns else delta
    if rank_by is None and {"rank_gain", "rank_loss"} <= set(d.columns) and d["rank_gain"].notna().any():
        stat = rd.rank_statistic(delta)
        gains = d[d["rank_gain"].notna()].sort_values(["rank_gain", "column"]).head(top)
        losses = d[d["rank_loss"].notna()].sort_values(["rank_loss", "column"]).head(top)
    else:
        stat = rank_by or ("delta_r2" if "delta_r2" in d.columns else "delta_importance")
        if stat not in d.columns:
            raise ParameterError(f"{{rank_by}} {stat}: the compare table has no such column", "rank_by",
                                 exit_code=EXIT_DATA)
        gains = losses = None
    key = stat or ("delta_r2" if "delta_r2" in d.columns else "delta_importance")
    a, b = (("r2_pre", "r2_ft") if key.startswith("delta_r2") else ("importance_pre", "importance_ft"))
    if not {a, b, key} <= set(d.columns):  # a hand-made table without both stages' values: no stable view
        if gains is None:
            gains = d[d[stat] > 0].sort_values([stat, "column"], ascending=[False, True]).head(top)
            losses = d[d[stat] < 0].sort_values([stat, "column"], ascending=[True, True]).head(top)
        return gains, losses, None, stat
    v_gains, v_losses, v_stable = three_views(d, k=top, stable_quantile=stable_quantile, rank_by=key).values()
    if gains is None:
        gains, losses = v_gains, v_losses
    return gains, losses, (v_stable if len(d) else None), stat


def null_sentence(delta) -> str:
    """How many features changed beyond the null, at q_bh < 0.05, naming the test."""
    if "q_bh" not in delta.columns or not delta["q_bh"].notna().any():
        return ("No test of change per feature in the compare table (no q_bh column): the rankings below "
                "say which features moved most, not which moved beyond chance.")
    q = delta["q_bh"]
    tested = int(q.notna().sum())
    n = int((q < 0.05).sum())
    test = ""
    if "test" in delta.columns:
        names = [t for t in dict.fromkeys(delta["test"]) if t]
        test = ", ".join(names)
    how = f"test: {test}" if test else "test not recorded in the file; older radlens: a permutation test swapping pre/ft per case"
    text = (f"{n} of {tested} features changed beyond the null at q_bh &lt; 0.05 ({esc(how)}; BH-FDR over "
            f"the features of this checkpoint).")
    if "null_delta" in delta.columns and delta["null_delta"].notna().any():
        nd = float(pd_first(delta["null_delta"]))
        src = pd_first(delta["null_delta_source"]) if "null_delta_source" in delta.columns else float("nan")
        src = src if isinstance(src, str) else "source not recorded"
        relative = ("common_shift" in delta.columns and "test" in delta.columns
                    and delta["common_shift"].notna().any()
                    and str(pd_first(delta["test"])).endswith("_relative"))
        if relative:
            cs = float(pd_first(delta["common_shift"]))
            text += (f" The null is an interval, on each feature's change relative to the change all of this "
                     f"checkpoint's features share (common shift {cs:+.3f} R²): a flag means "
                     f"|Δr² − common shift| &gt; δ = {nd:.3g} ({esc(src)}), a change larger than re-encoding the "
                     f"same information makes; a shared change shows in the common shift and in Table 1.")
        else:
            text += (f" The null is an interval: a flag means |Δr²| &gt; δ = {nd:.3g} ({esc(src)}), a change larger than "
                     f"re-encoding the same information makes.")
    if "null_panel_spearman" in delta.columns and delta["null_panel_spearman"].notna().any():
        rho = float(pd_first(delta["null_panel_spearman"]))
        text += (f" A second run of the same fine-tuning (the null panel) agrees with this checkpoint's Δr² ranks "
                 f"at Spearman ρ = {rho:.2f} over decodable features.")
    return text


def power_sentence(identities: dict, focus: str) -> str:
    """`underpowered: 28 decoder cases for h = 32; ...` as decode judged the reference and the
    focus checkpoint (lens/power.py, recorded through compare's sidecar); '' when neither was."""
    said = []
    for who in ("reference", focus):
        rec = identities.get(who) if who != "reference" else identities.get("__reference__")
        power = (rec or {}).get("power") or {}
        for reason in power.get("reasons") or []:
            if reason not in said:
                said.append(reason)
    if not said:
        return ""
    return ('<p class="warn"><b>underpowered:</b> ' + esc("; ".join(said))
            + ". The numbers below rest on too few cases to say much; use more cases or a smaller "
              "share (fit-share --hidden; rule in docs/validity.md, small cohorts).</p>")


def decodability_sentence(delta) -> str:
    """The pre-trained decodability the whole lens rests on: the median held-out R² over all
    columns, unclipped (a negative median: most features are not decoded at all)."""
    if "r2_pre" not in delta.columns or not delta["r2_pre"].notna().any():
        return ""
    r2 = delta["r2_pre"].astype(float)
    med = float(r2.median())
    pos = int((r2 > 0).sum())
    text = (f"Pre-trained decodability: median held-out R² {med:+.3f} over all {len(r2)} columns "
            f"(unclipped; {pos} above 0)")
    if "r2_ft" in delta.columns and delta["r2_ft"].notna().any():
        text += f"; fine-tuned median {float(delta['r2_ft'].astype(float).median()):+.3f}"
    text += "."
    if med <= 0:
        text += (" Most features are not decodable from the pre-trained embeddings on these cases, so "
                 "changes in them are noise.")
        return f'<p class="warn">{esc(text)}</p>'
    return f"<p>{esc(text)}</p>"


def features_vs_groups(delta, table1) -> str:
    """Why the feature count and the group count can disagree: two tests, two units."""
    if "q_bh" not in delta.columns or table1 is None or "q_bh" not in getattr(table1, "columns", ()):
        return ""
    if "null_delta" in getattr(table1, "columns", ()):   # the symmetric lens: one test, two units
        relative = "test" in table1.columns and table1["test"].astype(str).str.endswith("_relative").any()
        return (" Features and groups are different units of the same test: a feature counts when "
                "its own clipped Δr² (relative to the common shift, when the test says so) beats the "
                "interval null after BH over all features; a Table-1 group counts when its group-mean "
                f"Δr² ({'relative to the same common shift' if relative else 'not centred'}) does, "
                "after BH over the groups. Many small "
                "changes in one direction can make a group differ while no single feature does, "
                "and a few large feature changes can cancel in a group.")
    return (" Features and groups are different tests: a feature counts when its own paired "
            "test beats the null after BH over all features; a Table-1 group counts when the "
            "Wilcoxon test on each case's squared error averaged over the group's features does, "
            "after BH over the groups. Many small changes in one direction can make a group differ "
            "while no single feature does, and a few large feature changes can cancel in a group.")


def decodable_sentence(delta) -> tuple[str, bool]:
    """(note on features decodable in neither stage, whether most are)."""
    n = len(delta)
    bad = int((~delta["decodable"]).sum())
    src = delta.attrs.get("decodable_source")
    if src == "unknown" or not bad:
        return "", False
    how = ("as the compare table marks them in its decodable column" if src == "file"
           else "held-out R² ≤ 0 before and after; the compare table has no decodable column")
    text = (f"{bad} of {n} features are not decodable in either stage ({how}); they are left out of the gain, "
            f"loss and stable lists: a change in a feature the embedding never encoded is noise.")
    return text, bad > n / 2


def delta_section(rep: Report, delta, top: int, stable_quantile: float, rank_by: str | None) -> None:
    ci = delta.attrs.get("ci", {})
    gains, losses, stable, stat = views(delta, top, stable_quantile, rank_by)
    shown_stats = [s for s in ("delta_r2", "delta_importance") if s in delta.columns]
    if stat in shown_stats:
        shown_stats = [stat] + [s for s in shown_stats if s != stat]
    # the tests (q_bh, p_perm) next to the change they test, so no reader has to scroll to them
    first = stat if stat in delta.columns else "delta_r2"
    cols = ["column"] + [c for c in (first,) if c in delta.columns]
    for s_, (lo, hi) in ci.items():
        if s_ == first:
            cols += [lo, hi]
    cols += [c for c in ("q_bh", "p_perm", "q_perm", "p_null") if c in delta.columns]
    cols += [c for c in ("r2_pre", "r2_ft", "delta_r2", "importance_pre", "importance_ft",
                         "delta_importance", "delta_r2_mean", "delta_r2_sd", "delta_r2_direct")
             if c in delta.columns and c not in cols]
    for s_, (lo, hi) in ci.items():
        if lo not in cols:
            cols += [lo, hi]
    header = {c: c for c in cols}
    if None in ci:
        header["ci_low"], header["ci_high"] = "CI low (statistic not named)", "CI high (statistic not named)"

    forms = {c: column_format(delta[c].tolist(), c) for c in cols if c != "column" and c in delta.columns}

    def tab(rows):
        show = [c for c in cols if c in rows.columns]
        return table([header[c] for c in show],
                     [[forms[c](r[c]) if c in forms else fmt(r[c]) for c in show] for _, r in rows.iterrows()],
                     txt_cols=(0,))

    if rank_by is None and stat is None:
        ranked = "compare's ranks (rank_gain/rank_loss; the statistic they rank by is not recorded)"
    else:
        ranked = f"<code>{esc(stat)}</code>, {esc(rd.stat_label(stat))}" + (
            " (compare's ranks)" if rank_by is None else "")
    parts = [f"<p>Held-out decodability r² of each radiomic feature and its change Δr² = r²<sub>ft</sub> − "
             f"r²<sub>pre</sub>; importance I = ‖θ‖₂ of the feature's decoder row and ΔI = I<sub>ft</sub> − "
             f"I<sub>pre</sub> (the paper's statistic: a feature the embedding does not encode can still get a "
             f"large weight, so trust a change most when Δr² agrees). Ranked by {ranked}; stable features are "
             f"the least-changed among those above the {stable_quantile:g} quantile both before and after.</p>",
             f"<p><b>{null_sentence(delta)}</b></p>"]
    note, most = decodable_sentence(delta)
    if note:
        cls, lead = (' class="warn"', "<b>Warning:</b> most features are not decodable. ") if most else ("", "")
        parts.append(f"<p{cls}>{lead}{esc(note)}</p>")
    if "delta_r2_direct" in delta.columns:
        parts.append("<p class='muted'><code>delta_r2_direct</code>: the share-free control (ridge straight from "
                     "the embeddings); a change the lens sees but the control does not deserves doubt.</p>")
    if None in ci:
        parts.append("<p class='muted'>The compare table's <code>ci_low/ci_high</code> do not say which "
                     "statistic they bound (older radlens wrote the interval of its --rank-by statistic there); "
                     "they are listed, not drawn.</p>")
    if {"delta_r2", "delta_importance"} <= set(delta.columns):
        d = delta[delta["decodable"]]
        ok = d["delta_r2"].notna() & d["delta_importance"].notna()
        if ok.sum() > 2:
            from scipy.stats import spearmanr

            rho = spearmanr(d.loc[ok, "delta_importance"], d.loc[ok, "delta_r2"]).statistic
            parts.append(f"<p>Spearman ρ between ΔI and Δr² over {int(ok.sum())} decodable features: {fmt(rho)}.</p>")
    for view, rows, colour in (("Largest gains", gains, rf.GAIN), ("Largest losses", losses, rf.LOSS),
                               ("Stable features", stable, rf.STABLE)):
        if rows is None or not len(rows):
            continue
        parts.append(f"<h3>{esc(view)}</h3>")
        parts.append(rf.delta_view(rows, view, colour, shown_stats if view != "Stable features" or stat else shown_stats,
                                   {k: v for k, v in ci.items() if k is not None}))
        parts.append(tab(rows))
    parts.append(rf.delta_scatter(delta))
    rep.add("delta", "What fine-tuning changed: gains, losses, stable features (Fig. 3)", parts)


def size_section(rep: Report, delta, task_text: str) -> None:
    rows = rd.size_related(delta)
    if rows is None or not len(rows):
        return
    rows = rows.sort_values("delta_r2" if "delta_r2" in rows.columns else "r2_ft", ascending=False)
    mean_pre, mean_ft = float(np.nanmean(rows["r2_pre"])), float(np.nanmean(rows["r2_ft"]))
    show = [c for c in ("column", "r2_pre", "r2_ft", "delta_r2", "delta_importance") if c in rows.columns]
    task = (f" This encoder was fine-tuned to {esc(task_text)}." if task_text
            else " The fine-tuning task is not recorded in the inputs (give --metrics or --encoder).")
    rep.add("size", "Size-related radiomic features", [
        f"<p>Features that grow with the ROI (shape family; original-image Energy, TotalEnergy and the "
        f"non-uniformity features): {len(rows)} columns, mean held-out R² {fmt(mean_pre)} pre-trained and "
        f"{fmt(mean_ft)} fine-tuned. A fine-tune on a size-related target (e.g. gland volume) is expected to "
        f"decode these better.{task}</p>",
        table(show, [[fmt(r[c]) for c in show] for _, r in rows.head(40).iterrows()])])


def probe_intro(df) -> str:
    """What the probe table measured, from its protocol column (train-test by default: one
    split, no folds), so the words match the numbers."""
    protos = list(dict.fromkeys(df["protocol"].astype(str))) if "protocol" in df.columns else []
    if protos == ["train-test"]:
        how = ("Shallow models fitted on the manifest's train cases and scored on its test cases "
               "(--protocol train-test: one split, no sd)")
    elif protos:
        how = f"Cross-validated shallow models (--protocol {esc(', '.join(protos))}; the same folds for every table)"
    else:
        how = "Shallow models on each feature table (protocol not recorded)"
    return how + ": does the interpretable representation lose accuracy?"


def generic_section(rep: Report, sid: str, heading: str, df, intro: str, chart_title: str) -> None:
    parts = [f"<p>{intro}</p>"]
    if sid == "probe":
        parts.append(rf.mean_sd_bars(df, chart_title, f"fig_{sid}"))
    pairs = [(c, c[:-4] + "_ft") for c in df.columns if c.endswith("_pre") and c[:-4] + "_ft" in df.columns
             and _num(df[c]) and _num(df[c[:-4] + "_ft"])]
    if pairs and sid != "probe":
        labels = [c for c in df.columns if not _num(df[c])
                  and df[c].astype(str).str.len().max() <= 40][:2]
        pre, ft = pairs[0]
        parts.append(rf.pre_ft_bars(df, labels, pre, ft, chart_title, f"fig_{sid}"))
    parts.append(generic_table(df))
    rep.add(sid, heading, parts)


def provenance_section(rep: Report, records, rad: dict, command: str, versions: dict, created: str,
                       csv_commands=()) -> None:
    rows = [[r["role"], r["path"], r["bytes"], r["sha256"]] for r in records]
    parts = [f"<p>Written by <code>{esc(command)}</code> on {esc(created)}.</p>",
             table(["input", "path", "bytes", "sha256"], rows, txt_cols=(0, 1, 3), caption="Inputs"),
             table(["library", "version"], [[k, v] for k, v in sorted(versions.items())], txt_cols=(0, 1),
                   caption="Versions")]
    history = json_attr(rad["attrs"], "history", []) or []
    if isinstance(history, list) and history:
        hrows = [[h.get("subcommand", ""), h.get("command", ""), h.get("created", ""), h.get("radlens_version", "")]
                 for h in history if isinstance(h, dict)]
        parts.append(table(["step", "command", "created", "radlens"], hrows, txt_cols=(0, 1, 2, 3),
                           caption="History of the radiomics table"))
    if csv_commands:
        parts.append(table(["input", "command"], [list(c) for c in csv_commands], txt_cols=(0, 1),
                           caption="Commands recorded in the CSV inputs"))
    params = json_attr(rad["attrs"], "params", None)
    if params:
        import json

        parts.append("<details><summary>Radiomics parameters</summary><pre>"
                     + esc(json.dumps(params, indent=2, sort_keys=True, default=str)) + "</pre></details>")
    rep.add("provenance", "Provenance", parts)


def task_summary(metric_tables, encoders, focus: str, identities: dict | None = None) -> tuple[str, str]:
    """(task text, where it was read) of the fine-tuning behind the focus checkpoint: the
    --encoder checkpoint that IS the focus checkpoint's encoder (recorded sha256 or path;
    a file stem equal to the label for tables that record none; never a substring), or the
    only --encoder when the table records no identity; else the metrics CSV's metric
    column (kind only)."""
    identities = identities or {}
    if encoders:
        hit = rd.match_encoders([focus], encoders, identities).get(focus)
        if hit is not None:
            e, how = hit
            return (rd.describe_task(e["task"], e["target"]),
                    f"checkpoint {os.path.basename(e['path'])}, matched by {how}")
        recorded = (identities.get(focus) or {}).get("encoder")
        if recorded:
            return "", (f"none of the --encoder checkpoints is the encoder {focus} was embedded with "
                        f"({os.path.basename(str(recorded.get('path', '')))})")
        if len(encoders) == 1:
            e = encoders[0]
            return (rd.describe_task(e["task"], e["target"]),
                    f"checkpoint {os.path.basename(e['path'])}, the only --encoder; the compare table "
                    f"records no encoder to check it against")
        return "", (f"none of the --encoder checkpoints is named {focus} and the compare table "
                    f"records no encoder identity")
    kinds = [(p, rd.task_from_metrics(df)) for p, df in metric_tables]
    kinds = [(p, k) for p, k in kinds if k]
    if kinds:
        p, k = kinds[-1]
        return f"{k} (target not recorded in the metrics CSV)", f"metrics {os.path.basename(p)}"
    return "", ""


def build(radiomics: str, compare: str, stats: str, correlate_summary: str | None = None,
          cka: str | None = None, probe: str | None = None, metrics=(), title: str = "radlens report",
          top: int = 10, stable_quantile: float = 0.5, rank_by: str | None = None,
          command: str = "", versions: dict | None = None, created: str = "", encoders=(),
          checkpoint: str | None = None, ordered: bool | None = None, panels=None,
          stability: str | None = None, min_icc: float | None = None, saliency=None,
          control: str | None = None):
    """Read the inputs and return (html text, list of figures).

    encoders: the fine-tuned checkpoints' records (encoders.training.finetuned.
    read_finetune_record: path, task, target, epoch, run...); checkpoint: the compared
    checkpoint the single-checkpoint sections describe (default: the last); ordered: the
    checkpoints are epochs of one run (None: decide from their records or labels);
    panels: report.images.PanelSpec or None (no image panels); stability: icc.csv of
    `radlens stability` (each listed feature's ICC, change vs ICC); min_icc: leave features
    with a lower ICC out of the views; saliency: (saliency tables, maps folders) from
    `radlens saliency`, or None; control: stats' TABLE.csv of the same pipeline on
    negative-control images (each family's R² beside the real run's)."""
    rad = rd.radiomics_summary(radiomics)
    images = None
    if panels is not None:  # the manifest's columns are checked before any figure is drawn

        images = ri.CaseImages(panels)
    delta_all = rd.read_delta(compare)
    stats_all = rd.read_stats(stats)
    focus = rd.focus_checkpoint(delta_all, checkpoint)
    delta = delta_all[delta_all["checkpoint"] == focus].reset_index(drop=True)
    delta.attrs = dict(delta_all.attrs)
    table1 = rd.stats_for(stats_all, focus, delta_all.attrs["single"])
    n_unstable = 0
    if stability:
        delta = rs.attach_icc(delta, rs.read_icc(stability))
        if min_icc is not None:
            kept = rs.keep_stable(delta, min_icc)
            n_unstable, delta = len(delta) - len(kept), kept
    optional = {}
    for role, path in (("correlate_summary", correlate_summary), ("cka", cka), ("probe", probe)):
        if path:
            optional[role] = rd.read_csv(path, role)
    metric_tables = [(p, rd.read_csv(p, "metrics")) for p in metrics]
    enc_info = list(encoders)
    records = [rd.file_record("radiomics", radiomics), rd.file_record("compare", compare),
               rd.file_record("stats", stats)]
    if stability:
        records.append(rd.file_record("stability", stability))
    control_table = None
    if control:
        control_all = rd.read_stats(control)
        names = list(dict.fromkeys(control_all["checkpoint"]))
        control_table = rd.stats_for(control_all, focus if focus in names else names[0], True)
        records.append(rd.file_record("control", control))
    for role, path in (("correlate-summary", correlate_summary), ("cka", cka), ("probe", probe)):
        if path:
            records.append(rd.file_record(role, path))
    records += [rd.file_record("metrics", p) for p, _ in metric_tables]
    records += [rd.file_record("encoder", e["path"]) for e in enc_info]
    identities = rd.checkpoint_identities(compare)
    task_text, task_src = task_summary(metric_tables, enc_info, focus, identities)

    rep = Report(title)
    n_ck = len(delta_all.attrs["checkpoints"])
    cohort_section(rep, rad, delta)
    note = "" if delta_all.attrs["single"] and n_ck == 1 else f" (checkpoint {focus} against the reference)"
    table1_section(rep, table1, note)
    fig2_section(rep, table1, delta)
    delta_section(rep, delta, top, stable_quantile, rank_by)
    if n_ck > 1:
        rc.checkpoints_section(rep, delta_all, enc_info, ordered, identities)
    shown = []
    if images is not None:
        gains, losses, _, _ = views(delta, top, stable_quantile, rank_by)
        shown = ri.panels_section(rep, images, radiomics, gains.head(5), losses.head(5))
    if saliency:
        saliency_section(rep, images, list(saliency[0]), list(saliency[1]), shown)
        records += [rd.file_record("saliency", p) for p in saliency[0]]
    if stability:
        gains, losses, _, stat = views(delta, top, stable_quantile, rank_by)
        rs.stability_section(rep, delta, gains, losses, stat, min_icc, n_unstable, stability)
    if control_table is not None:
        rs.control_section(rep, table1, control_table, control)
    size_section(rep, delta, task_text)
    if "correlate_summary" in optional:
        generic_section(rep, "correlate", "Rad4XCNN correlation summary", optional["correlate_summary"],
                        "Per radiomic family and modality: deep features with at least one correlated "
                        "radiomic feature (and correlated pairs), before vs after fine-tuning.",
                        "Deep features explained, pre vs fine-tuned")
    if "cka" in optional:
        df = optional["cka"]
        intro = "Centred kernel alignment between the embedding tables."
        if "cka" in df.columns and len(df):
            intro += " CKA = " + ", ".join(fmt(v) for v in df["cka"].head(5)) + "."
        generic_section(rep, "cka", "Representation similarity (CKA)", df, intro, "CKA")
    if "probe" in optional:
        generic_section(rep, "probe", "Probes: accuracy of shallow models per representation", optional["probe"],
                        probe_intro(optional["probe"]), "Probe")
    if metric_tables:
        parts = []
        for i, (p, df) in enumerate(metric_tables):
            parts.append(f"<h3>{esc(os.path.basename(p))}</h3>")
            parts.append(rf.metric_curves(df, os.path.basename(p), f"fig_metrics_{i + 1}"))
            parts.append(generic_table(df))
        rep.add("metrics", "Fine-tuning metrics", parts)
    csv_commands = []
    for role, df in [("compare", delta_all), ("stats", stats_all), *optional.items(),
                     *((f"metrics {os.path.basename(p)}", d) for p, d in metric_tables)]:
        for line in df.attrs.get("comments", []):
            csv_commands.append((role, line))
        if "command" in df.columns:
            for c in dict.fromkeys(df["command"].dropna().astype(str)):
                csv_commands.append((role.replace("_", "-"), c))
    provenance_section(rep, records, rad, command, versions or {}, created, csv_commands)

    if "q_bh" in table1.columns:
        how = ("group-mean Δr² beyond the interval null, Nadeau–Bengio corrected resampled t"
               if "null_delta" in table1.columns else "Wilcoxon signed-rank")
        groups = f"{int((table1['q_bh'] < 0.05).sum())} of {len(table1)} Table-1 groups differ at q_bh &lt; 0.05 " \
                 f"({how}, BH-FDR across the table)."
    elif "wilcoxon_p" in table1.columns:
        groups = (f"{int((table1['wilcoxon_p'] < 0.05).sum())} of {len(table1)} Table-1 groups have a raw Wilcoxon "
                  f"p &lt; 0.05 (the stats table has no q_bh: not corrected for the table's many groups).")
    else:
        groups = ""
    which = "" if delta_all.attrs["single"] and n_ck == 1 else f" Checkpoint {esc(focus)} against the reference" + (
        f" ({n_ck} compared; the Checkpoints section shows all)." if n_ck > 1 else ".")
    task = (f" The encoder was fine-tuned to <b>{esc(task_text)}</b> (read from {esc(task_src)})." if task_text
            else f" The fine-tuning task is not known: {esc(task_src)}." if task_src
            else " The fine-tuning task is not recorded in the inputs (give --metrics or --encoder).")
    intro = (f'<p class="muted">Radiomic lens on {rad["n_cases"]} cases and {len(delta)} radiomic features: '
             f"how well the encoder's embeddings decode radiomic features before and after fine-tuning, and "
             f"which features gained or lost.{which}{task}</p>"
             + power_sentence(identities, focus) + decodability_sentence(delta)
             + f"<p>{null_sentence(delta)} {groups}{features_vs_groups(delta, table1)}</p>")
    return rep.render(intro), rep.figures


def check_options(top: int = 10, stable_quantile: float = 0.5, rank_by: str | None = None) -> None:
    """build's option checks (the command runs them before reading any input)."""
    if top < 1:
        raise ParameterError("{top} must be at least 1", "top")
    if not 0.0 <= stable_quantile <= 1.0:
        raise ParameterError("{stable_quantile} must be between 0 and 1", "stable_quantile")
    if rank_by is not None and not rank_by.startswith("delta_"):
        raise ParameterError(f"{{rank_by}} {rank_by}: use delta_r2 or delta_importance (or another delta_* column)",
                             "rank_by")


PROVENANCE_ID = "radlens-provenance"


def embed_provenance(text: str, attrs: dict) -> str:
    """The report's own provenance (inputs with sha256, params, command, versions) as JSON in
    a <meta> of its <head> (no script: the report runs no code), which `radlens info
    report.html` reads; browsers do not show it."""
    rec = {"radlens_schema": "report/1", **decoded_attrs(attrs)}
    for r in (rec.get("inputs") or {}).values():
        if isinstance(r, dict) and "path" in r:
            r["path"] = shown_name(r["path"])
    blob = _html.escape(json.dumps(rec, sort_keys=True, default=str), quote=True)
    block = f'<meta name="{PROVENANCE_ID}" content="{blob}">\n'
    return text.replace("</head>", block + "</head>", 1)
