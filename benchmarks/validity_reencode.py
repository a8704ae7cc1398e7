"""Does a flag survive re-encoding? The lens's default against 0.2.0's (issue 23).

Cohorts from radlens_cli.synth.reencode (independent of the test fixtures): ~156 radiomic
columns in ~33 Table-1 groups, embeddings from a random two-layer network of the latents.
Conditions: the nulls second_run, tanh, power, redundant, fresh_noise, rotation, scale,
shift (the information is the same) and planted / planted_new (12 columns lose, 12 gain a
true delta R^2 of 0.10-0.15; planted_new with a new encoding).

Every method runs its default pipeline through the library calls the commands make
(fit_share_tables, decode, the delta and group tables; no options but the method):
- symmetric (the default): q_bh < 0.05 of the interval null |delta_r2_relative| <= 0.05
  over 10 re-splits (each feature relative to the checkpoint's common shift); groups the
  same on group-mean delta_r2_clipped relative to the same shift (0.5);
- symmetric-uncentred (--centre none: 0.3.0's feature test, 0.4.0's group test): the same
  decodes, |delta_r2_clipped| <= 0.05, groups on their mean as it is;
- symmetric-panel (--null-panel): the default's test with delta from a reference panel,
  the second run's decoder taken as a second run of the reference
  (lens.interval.panel_null_deltas: the 0.95 quantile of the centred |delta| over
  decodable features; groups: of |group-mean delta|); every condition but second_run;
- calibrated-0.2 (0.2.0's default): q_bh < 0.05 of the paired t-test of squared errors;
  groups: Wilcoxon q_bh < 0.05.

Per cohort and condition one CSV row (written as it goes, so a long run can be summarised
part way): % features flagged, Table-1 groups flagged, and for planted conditions the
planted columns flagged, unplanted flags, precision@10 of the gain and loss ranks.

    nice -n 10 python benchmarks/validity_reencode.py --out reencode.csv          # all
    python benchmarks/validity_reencode.py --sizes 400:2 --methods symmetric      # quick
    python benchmarks/validity_reencode.py --summarise reencode.csv               # table
    python benchmarks/validity_reencode.py --sizes 100:1 --conditions second_run,planted \
        --resplits 3 --d 16 --out /tmp/r.csv                                   # smoke run, ~5 s
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

GROUPINGS = ("family", "image_type", "modality", "modality_family")


def run_cohort(n, seed, methods, d, conditions, writer, fh, resplits=None, encoder="saturating"):
    from radlens_cli.lens import compare as cmp
    from radlens_cli.lens import interval
    from radlens_cli.lens.stats import group_table
    from radlens_cli.lens.steps import decode, fit_share_tables
    from radlens_cli.synth.reencode import make_cohort, tables

    coh = make_cohort(n, d=d, seed=seed, conditions=conditions, encoder=encoder)
    emb, rad = tables(coh)
    for method in methods:
        t0 = time.time()
        extra = {"n_resplits": resplits} if resplits and method == "symmetric" else {}
        share = fit_share_tables(emb, rad, method=method, device="cpu", **extra)
        pre = decode(share, emb, rad)
        panel = None       # (feature, group) null_delta with the second run as the reference panel
        for cond in conditions:
            t1 = time.time()
            ft = decode(share, tables(coh, cond)[0], rad)
            if method == "symmetric":
                n_s, n_d, n_t = pre.sizes
                if cond == "second_run":
                    panel = interval.panel_null_deltas(pre.resplit["r2"], ft.resplit["r2"],
                                                       share.column_meta, GROUPINGS)
                tests = [("symmetric", "median", interval.NULL_DELTA, interval.NULL_DELTA, "default"),
                         ("symmetric-uncentred", "none", interval.NULL_DELTA, interval.NULL_DELTA, "default")]
                if panel is not None and cond != "second_run":
                    tests.append(("symmetric-panel", "median", panel[0], panel[1], "panel"))
                tables_, groups_ = {}, {}
                for label, centre, delta, group_delta, source in tests:
                    tables_[label] = interval.delta_resplit_table(
                        share.columns, share.column_meta, pre.resplit["r2"], ft.resplit["r2"],
                        pre.resplit["importance"], ft.resplit["importance"], n_s + n_d, n_t,
                        delta, source, centre=centre)
                    groups_[label] = interval.group_resplit_stats(
                        pre.resplit["r2"], ft.resplit["r2"], pre.resplit["mse"], ft.resplit["mse"],
                        share.column_meta, n_s + n_d, n_t, group_delta, source, GROUPINGS,
                        centre=centre)
                stat = "delta_r2_clipped"   # the ranks; the flags test delta_r2_relative when centred
            else:
                p = cmp.paired_test(pre.squared_error, ft.squared_error)
                tables_ = {method: cmp.delta_table(share.columns, share.column_meta,
                                                   pre.decoder.theta, ft.decoder.theta, pre.r2,
                                                   ft.r2, p_null=p)}
                g = group_table(pre.squared_error, ft.squared_error, pre.r2, ft.r2,
                                share.column_meta, by=GROUPINGS)
                stat = "delta_r2"
            seconds = round(time.time() - t1, 1)
            for label, df in tables_.items():
                write_row(label, df, groups_[label] if method == "symmetric" else g, stat, coh, cond,
                          n, seed, seconds, writer, fh)
        print(f"  {method} n={n} seed={seed}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)


def write_row(method, df, g, stat, coh, cond, n, seed, seconds, writer, fh):
    """One CSV row (and a progress line) for one method's tables of one condition."""
    from radlens_cli.synth.reencode import PLANTED

    flag = (df["q_bh"] < 0.05).to_numpy()
    dec = df["decodable"].to_numpy(dtype=bool)
    truth = np.array([coh.truth[cond][coh.columns.index(c)] for c in df["column"]])
    row = {"method": method, "n": n, "seed": seed, "condition": cond,
           "features": len(df), "flagged_pct": 100 * flag.mean(),
           "groups": len(g), "groups_flagged": int((g["q_bh"] < 0.05).sum()),
           "mean_delta_decodable": float(df[stat][dec].mean()),
           "seconds": seconds,
           "null_delta": float(df["null_delta"].iloc[0]) if "null_delta" in df.columns else ""}
    if cond in PLANTED:
        gain = df.sort_values("rank_gain").index[:10]
        loss = df.sort_values("rank_loss").index[:10]
        row.update({"planted": int((truth != 0).sum()),
                    "planted_flagged": int((flag & (truth != 0)).sum()),
                    "unplanted_flagged": int((flag & (truth == 0)).sum()),
                    "precision10_gain": float((truth[gain] > 0).mean()),
                    "precision10_loss": float((truth[loss] < 0).mean())})
    writer.writerow(row)
    fh.flush()
    print(f"  {method:10s} n={n} seed={seed} {cond:12s} flagged {row['flagged_pct']:5.1f}% "
          f"groups {row['groups_flagged']:2d}/{row['groups']}"
          + (f" planted {row['planted_flagged']}/{row['planted']} unplanted "
             f"{row['unplanted_flagged']} p@10 {row['precision10_gain']:.1f}/"
             f"{row['precision10_loss']:.1f}" if cond in PLANTED else ""),
          file=sys.stderr, flush=True)


FIELDS = ["method", "n", "seed", "condition", "features", "flagged_pct", "groups", "groups_flagged",
          "mean_delta_decodable", "seconds", "planted", "planted_flagged", "unplanted_flagged",
          "precision10_gain", "precision10_loss", "null_delta"]


def summarise(paths):
    """The markdown tables of docs/validity.md from results CSVs."""
    import pandas as pd

    paths = [paths] if isinstance(paths, str) else paths
    df = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    out = []
    nulls = df[df.planted.isna()]
    if len(nulls):
        out += ["Nulls: % features flagged, mean (max) over cohorts; Table-1 groups flagged, "
                "mean (max); [cohorts]", ""]
        sizes = sorted(nulls.n.unique())
        head = "| method | null | " + " | ".join(f"n = {s}" for s in sizes) + " |"
        out += [head, "|---|---|" + "---|" * len(sizes)]
        for (m, c), sub in nulls.groupby(["method", "condition"], sort=False):
            cells = []
            for s in sizes:
                x = sub[sub.n == s]
                cells.append("" if not len(x) else
                             f"{x.flagged_pct.mean():.1f} % ({x.flagged_pct.max():.1f}), "
                             f"{x.groups_flagged.mean():.1f} ({x.groups_flagged.max()}) [{len(x)}]")
            out.append(f"| {m} | {c} | " + " | ".join(cells) + " |")
        out.append("")
        ok = nulls.groupby("method").apply(
            lambda x: f"max {x.flagged_pct.max():.1f} % features, max {x.groups_flagged.max()} "
                      f"groups in any cohort", include_groups=False)
        out += [f"- {m}: {v}" for m, v in ok.items()] + [""]
    if "null_delta" in df.columns and (df.method == "symmetric-panel").any():
        pan = df[df.method == "symmetric-panel"].drop_duplicates(["n", "seed"])
        out += ["- symmetric-panel: feature null_delta from the panel, mean (min-max) over cohorts: "
                + ", ".join(f"n = {s}: {x.null_delta.mean():.3f} ({x.null_delta.min():.3f}-"
                            f"{x.null_delta.max():.3f})" for s, x in pan.groupby("n")), ""]
    pl = df[df.planted.notna()]
    if len(pl):
        out += ["Planted (24 columns, true |delta R^2| 0.10-0.15): planted flagged %, unplanted "
                "share of the flags %, precision@10 gain / loss (means over cohorts)", ""]
        out += ["| method | condition | n | cohorts | planted flagged | unplanted / flags | "
                "precision@10 gain | precision@10 loss |", "|---|---|---|---|---|---|---|---|"]
        for (m, c, s), x in pl.groupby(["method", "condition", "n"], sort=False):
            flags = x.planted_flagged + x.unplanted_flagged
            share = (x.unplanted_flagged.sum() / flags.sum() * 100) if flags.sum() else 0.0
            out.append(f"| {m} | {c} | {s} | {len(x)} | "
                       f"{100 * x.planted_flagged.sum() / x.planted.sum():.0f} % | {share:.0f} % | "
                       f"{x.precision10_gain.mean():.2f} | {x.precision10_loss.mean():.2f} |")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="400:10,1000:10,2000:5",
                    help="n:cohorts[:first seed],... (cohort seeds first .. first+cohorts-1)")
    ap.add_argument("--methods", default="symmetric,calibrated-0.2")
    ap.add_argument("--conditions", default=None, help="comma-separated (default: all)")
    ap.add_argument("--d", type=int, default=64, help="embedding dims")
    ap.add_argument("--encoder", default="saturating",
                    help="the cohorts' random networks: saturating (the default) or smooth "
                         "(radlens_cli.synth.reencode.ENCODERS)")
    ap.add_argument("--out", default="validity_reencode.csv")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--resplits", type=int, default=None,
                    help="re-splits of the symmetric lens (default: fit-share's, 10)")
    ap.add_argument("--summarise", default=None, nargs="+",
                    help="print the tables of existing CSVs (concatenated) and exit")
    a = ap.parse_args(argv)
    if a.summarise:
        sys.stdout.write(summarise(a.summarise))
        return
    import torch

    from radlens_cli.lens.share import method_name
    from radlens_cli.synth.reencode import CONDITIONS

    torch.set_num_threads(a.threads)
    os.environ.setdefault("TQDM_DISABLE", "1")
    methods = [method_name(m) for m in a.methods.split(",")]
    conditions = tuple(a.conditions.split(",")) if a.conditions else CONDITIONS
    sizes = [tuple(int(x) for x in s.split(":")) + (0,) for s in a.sizes.split(",")]
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for n, k, first, *_ in sizes:
            for seed in range(first, first + k):
                run_cohort(n, seed, methods, a.d, conditions, w, fh, a.resplits, a.encoder)
    sys.stdout.write(summarise(a.out))


if __name__ == "__main__":
    main()
