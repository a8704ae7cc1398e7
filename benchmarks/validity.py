"""Measure the lens's calibration and recovery (the figures of docs/validity.md).

For each cohort (size n, embedding dim d, seed) from tests/lens/generators.py:
fit-share on the reference embeddings, decode the reference, its information-preserving
transforms (nulls) and a planted fine-tuned checkpoint (gains one latent set, loses
another), then compare and stats against the reference -- the library calls the commands make
(lens.fit_share, lens.decode, lens.compare_decoders, lens.group_stats), in memory, with
their default options unless --method paper. Prints one row per (cohort, condition):
fraction of features with q_bh < 0.05, Table-1 groups with q_bh < 0.05, mean delta_r2,
and for the planted checkpoint precision@10 of the gained and the lost sets. Besides the
exact transforms, two noisy nulls carry the same latent information with a fresh draw of
embedding noise: in the same basis (renoised) and in a new random basis (remixed).

    PYTHONPATH=$PWD python benchmarks/validity.py                 # calibrated-0.2 (0.2.0 default)
    PYTHONPATH=$PWD python benchmarks/validity.py --method paper  # the paper's method
    PYTHONPATH=$PWD python benchmarks/validity.py --align whitened
    python benchmarks/validity.py --sizes 120x8 --seeds 1 --epochs 2   # smoke run, ~5 s
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def run_cohort(n, d, seed, method, epochs, folder, permutations=0, align=None):
    """folder: unused since the steps run in memory (kept for callers)."""
    from radlens_cli import lens
    from tests.lens.generators import cohort, null_transforms, precision_at

    C = cohort(n=n, d=d, seed=seed)
    pre = C.pre()
    same = {"A": 1.0, "down": 1.0, "up": 0.0}
    tables = {"pre": pre, **null_transforms(pre, seed=seed + 100),
              # the same information, fresh embedding noise (same basis / a new basis)
              "renoised": C.embed(same, "pre"), "remixed": C.embed(same, "other"),
              "planted": C.embed({"A": 1.0, "down": 0.0, "up": 1.0}, "ft")}
    if method == "paper" or align == "none":   # the frozen share takes only the reference's d
        tables.pop("duplicated")
    share = lens.fit_share(pre, C.rad, hidden=256, epochs=epochs, device="cpu", method=method,
                           seed=seed)   # h = 256: the measurements in docs/validity.md (0.2.0)
    decoders = {k: lens.decode(share, t, C.rad, allow_different_preprocessing=True, align=align)
                for k, t in tables.items()}
    rows = []
    others = [k for k in tables if k != "pre"]
    df = lens.compare_decoders(decoders["pre"], [decoders[k] for k in others], labels=others,
                               top=0, permutations=permutations, seed=seed,
                               rank_by="delta_r2").table
    st = lens.group_stats(decoders["pre"], [decoders[k] for k in others], labels=others)
    for k in others:
        sub, sg = df[df.checkpoint == k], st[st.checkpoint == k]
        row = {"n": n, "d": d, "seed": seed, "condition": k,
               "flagged": float((sub.q_bh < 0.05).mean()),
               "groups_flagged": int((sg.q_bh < 0.05).sum()), "groups": len(sg),
               "mean_delta_r2": float(sub.delta_r2.mean()),
               "mean_delta_r2_direct": float(sub.delta_r2_direct.mean()) if "delta_r2_direct" in sub else np.nan}
        if permutations:
            row["flagged_perm"] = float((sub.q_perm < 0.05).mean())
        if k == "planted":
            row["prec10_gain"] = precision_at(sub, C.columns_of["up"], 10, "rank_gain")
            row["prec10_loss"] = precision_at(sub, C.columns_of["down"], 10, "rank_loss")
            planted = set(C.columns_of["up"]) | set(C.columns_of["down"])
            hit = set(sub[sub.q_bh < 0.05].column)
            row["q_precision"] = len(hit & planted) / max(1, len(hit))
            row["q_recall"] = len(hit & planted) / len(planted)
            unplanted = sub[~sub.column.isin(planted) & (sub.q_bh < 0.05)]
            row["unplanted_hit_abs_dr2_direct"] = float(unplanted.delta_r2_direct.abs().mean()) \
                if len(unplanted) else np.nan
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="calibrated-0.2",
                    help="calibrated-0.2 (0.2.0's default; this benchmark's tables) or paper; "
                         "0.3.0's default is measured by benchmarks/validity_reencode.py")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--permutations", type=int, default=0)
    ap.add_argument("--sizes", default="300x32,600x64,1200x128")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--align", default=None, help="decode --align (default: the method's)")
    ap.add_argument("--from-csv", default=None, help="summarise an earlier --csv instead of running")
    a = ap.parse_args()
    import pandas as pd

    os.environ.setdefault("TQDM_DISABLE", "1")
    from radlens_cli import log

    log.VERBOSITY["level"] = 0
    rows = []
    if a.from_csv:
        df = pd.read_csv(a.from_csv)
        print(markdown(df))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes.split(","):
            n, d = map(int, size.split("x"))
            for seed in range(a.seeds):
                rows += run_cohort(n, d, seed, a.method, a.epochs, tmp, a.permutations, a.align)
    df = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    agg = df.groupby("condition").agg(flagged_max=("flagged", "max"),
                                      groups_flagged_max=("groups_flagged", "max"),
                                      mean_dr2_min=("mean_delta_r2", "min"),
                                      mean_dr2_max=("mean_delta_r2", "max"))
    print(agg.to_string(float_format=lambda v: f"{v:.3f}"))
    pl = df[df.condition == "planted"]
    print(f"planted q_bh<0.05: precision {pl.q_precision.mean():.2f} (min {pl.q_precision.min():.2f}), "
          f"recall {pl.q_recall.mean():.2f} (min {pl.q_recall.min():.2f})")
    print(f"planted precision@10: gain min {pl.prec10_gain.min():.2f} mean {pl.prec10_gain.mean():.2f}; "
          f"loss min {pl.prec10_loss.min():.2f} mean {pl.prec10_loss.mean():.2f}")
    print(markdown(df))
    if a.csv:
        df.to_csv(a.csv, index=False)


def markdown(df) -> str:
    """The docs/validity.md table: per condition, over all cohorts."""
    order = ["rotation", "permutation", "scale", "shift", "combined", "duplicated", "renoised",
             "remixed", "anisotropic", "planted"]
    lines = ["| condition | cohorts | features q_bh<0.05: mean (max) | Table-1 groups q_bh<0.05: "
             "cohorts with any (max) | mean Δr²: range | mean Δr² share-free: range |"
             + (" features q_perm<0.05: max |" if "flagged_perm" in df else ""),
             "|---|---:|---:|---:|---:|---:|" + ("---:|" if "flagged_perm" in df else "")]
    for c in [c for c in order if c in set(df.condition)]:
        s = df[df.condition == c]
        line = (f"| {c} | {len(s)} | {100 * s.flagged.mean():.1f} % ({100 * s.flagged.max():.1f} %) | "
                f"{int((s.groups_flagged > 0).sum())} ({int(s.groups_flagged.max())} of "
                f"{int(s.groups.max())}) | {s.mean_delta_r2.min():+.3f} … {s.mean_delta_r2.max():+.3f} | "
                f"{s.mean_delta_r2_direct.min():+.3f} … {s.mean_delta_r2_direct.max():+.3f} |")
        if "flagged_perm" in df:
            line += f" {100 * s.flagged_perm.max():.1f} % |"
        lines.append(line)
    pl = df[df.condition == "planted"]
    if len(pl):
        lines += ["", f"Planted recovery over {len(pl)} cohorts: precision@10 of the gained set "
                  f"by rank_gain min {pl.prec10_gain.min():.2f} (mean {pl.prec10_gain.mean():.2f}), "
                  f"of the lost set by rank_loss min {pl.prec10_loss.min():.2f} "
                  f"(mean {pl.prec10_loss.mean():.2f})"
                  + (f"; of the features at q_bh < 0.05, {100 * pl.q_precision.mean():.0f} % "
                     f"(min {100 * pl.q_precision.min():.0f} %) are planted, and "
                     f"{100 * pl.q_recall.mean():.0f} % (min {100 * pl.q_recall.min():.0f} %) of the "
                     f"planted features are at q_bh < 0.05" if "q_precision" in pl else "") + "."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
