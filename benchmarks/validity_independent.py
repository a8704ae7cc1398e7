"""Independent check of the lens's calibration (issue 10) with generators of its own.

Unlike tests/lens/generators.py (linear mixes of latents + isotropic noise), here:
- embeddings are NON-linear functions of latents, as a CNN's pooled features are:
  ReLU (pre-trained) of a random projection of the latents plus noise, with a per-dim
  negative bias so they are non-negative, skewed and some dims are dead (always 0);
- radiomic columns are skewed / heavy-tailed / non-linear functions of one latent
  (log-normal, squared, tanh, t-distributed noise), named like pyradiomics output
  (`t2/original_glcm_Contrast`) over 3 modalities x 6 families x 3 image types;
- cohorts n in 300..1000 with a 7:1:2 split and d from 32 to 768 (d near or above the
  number of train cases);
- the planted checkpoint is built in a DIFFERENT basis and non-linearity (tanh of a new
  projection), keeping set A, losing `down`, gaining `up`;
- an extra null: per-dimension positive rescaling (as a fine-tuned LayerNorm gamma).

Runs the real CLI with 0.2.0's default options (fit-share --method calibrated-0.2, decode,
compare --permutations 200,
stats) and prints one row per condition.

    PYTHONPATH=$PWD python benchmarks/validity_independent.py              # the table
    PYTHONPATH=$PWD python benchmarks/validity_independent.py --cohorts 300x256:0
    python benchmarks/validity_independent.py --cohorts 100x8:0 --permutations 0   # smoke run, ~12 s
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from radlens_cli.io.tables import CaseTable, write_table  # noqa: E402

MODALITIES = ("t2", "adc", "dwi")
FEATURES = {
    "firstorder": ("Energy", "Entropy", "Kurtosis", "Skewness", "Variance", "Median"),
    "glcm": ("Contrast", "Correlation", "JointEnergy", "Idm", "ClusterShade", "Autocorrelation"),
    "glrlm": ("RunEntropy", "ShortRunEmphasis", "LongRunEmphasis", "GrayLevelNonUniformity"),
    "glszm": ("ZoneEntropy", "SmallAreaEmphasis", "LargeAreaEmphasis", "ZonePercentage"),
    "gldm": ("DependenceEntropy", "LargeDependenceEmphasis", "SmallDependenceEmphasis"),
    "ngtdm": ("Busyness", "Coarseness", "Complexity", "Strength"),
}
IMAGE_TYPES = ("original", "wavelet-LLH", "wavelet-HHH")
NULLS = ("rotation", "permutation", "scale", "shift", "combined")
EXTRA = ("perdim_scale",)
DEFAULT_COHORTS = ("300x32:0", "300x256:1", "400x768:2", "600x128:3", "600x512:4",
                   "800x64:5", "1000x384:6", "1000x768:7")


def make_cohort(n: int, d: int, seed: int, n_A=6, n_down=3, n_up=3, per_latent=5, n_noise=15):
    """(rad CaseTable, tables dict name -> embeddings CaseTable, sets dict name -> columns)."""
    rng = np.random.default_rng(10_000 + seed)
    L = n_A + n_down + n_up
    U = rng.standard_t(df=6, size=(n, L))                 # heavier-tailed latents
    kind = {**{i: "A" for i in range(n_A)}, **{i: "down" for i in range(n_A, n_A + n_down)},
            **{i: "up" for i in range(n_A + n_down, L)}}
    slots = [(m, fam, feat, t) for t in IMAGE_TYPES for fam, fs in FEATURES.items()
             for feat in fs for m in MODALITIES]
    pick = rng.permutation(len(slots))
    cols, vals, sets = [], [], {"A": [], "down": [], "up": [], "noise": []}
    k = 0
    for li in list(range(L)) * per_latent + [None] * n_noise:
        m, fam, feat, t = slots[pick[k]]
        k += 1
        name = f"{m}/{t}_{fam}_{feat}"
        if li is None:
            v = np.exp(rng.normal(size=n)) * 50.0
            sets["noise"].append(name)
        else:
            u = U[:, li] + 0.35 * rng.standard_t(df=4, size=n)
            form = rng.integers(4)
            v = (np.exp(0.7 * u) if form == 0 else u * u + 0.5 * u if form == 1
                 else np.tanh(u) + 0.1 * u if form == 2 else 3.0 + u)
            v = v * 10.0 ** rng.uniform(-2, 4)
            sets[kind[li]].append(name)
        cols.append(name)
        vals.append(v)
    ids = np.array([f"P{seed:02d}-{i:05d}" for i in range(n)], dtype=object)
    n_tr, n_va = int(round(0.7 * n)), int(round(0.1 * n))
    split = np.array(["train"] * n_tr + ["val"] * n_va + ["test"] * (n - n_tr - n_va),
                     dtype=object)[rng.permutation(n)]
    rad = CaseTable(ids, np.stack(vals, axis=1), cols, split=split)

    def features(latents, weight, act, seed_key):
        """act(U[:, latents] * weight @ P + b + noise), a CNN-like pooled feature map."""
        r = np.random.default_rng(seed_key)
        P = r.normal(size=(len(latents), d)) / np.sqrt(len(latents))
        b = r.normal(-0.4, 0.5, size=d)
        b[r.random(d) < 0.08] = -50.0                      # dead dims (always 0 under ReLU)
        pre_act = (U[:, latents] * weight) @ P + b + 0.35 * r.normal(size=(n, d))
        return np.maximum(pre_act, 0.0) if act == "relu" else np.tanh(pre_act)

    A = list(range(n_A))
    down = list(range(n_A, n_A + n_down))
    up = list(range(n_A + n_down, L))
    X = features(A + down, 1.0, "relu", 20_000 + seed)
    r = np.random.default_rng(30_000 + seed)
    Q, _ = np.linalg.qr(r.normal(size=(d, d)))
    perm = r.permutation(d)
    shift = r.normal(size=d)
    gamma = np.exp(r.uniform(np.log(0.5), np.log(2.0), size=d))
    out = {"pre": X, "rotation": X @ Q, "permutation": X[:, perm], "scale": 1.3 * X,
           "shift": X + 0.2 + shift, "combined": 0.7 * (X @ Q)[:, perm] - 0.5 + shift,
           "perdim_scale": X * gamma,
           "planted": features(A + up, 1.0, "tanh", 40_000 + seed)}
    tables = {k: CaseTable(ids, v, [f"feat{j:03d}" for j in range(d)], split=split)
              for k, v in out.items()}
    return rad, tables, sets


def precision_at(sub, columns, k=10, by="rank_gain"):
    top = sub.dropna(subset=[by]).sort_values(by)["column"].to_numpy()[:k]
    return float(np.mean([c in set(columns) for c in top])) if len(top) else 0.0


def run_cohort(n, d, seed, workdir: Path, permutations=200, extra_fit=()):
    import pandas as pd
    from typer.testing import CliRunner

    from radlens_cli.main import app

    def cli(*args):
        r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        if r.exit_code != 0:
            raise SystemExit(f"{args[0]} failed: {r.stderr}")

    f = workdir / f"n{n}_d{d}_s{seed}"
    f.mkdir(parents=True, exist_ok=True)
    rad, tables, sets = make_cohort(n, d, seed)
    write_table(rad, str(f / "rad.h5"))
    for k, t in tables.items():
        write_table(t, str(f / f"{k}.h5"))
    cli("fit-share", f / "pre.h5", f / "rad.h5", "-o", f / "share.h5", "--seed", seed,
        "--device", "cpu", "--quiet", "--method", "calibrated-0.2", *extra_fit)
    for k in tables:
        cli("decode", f / "share.h5", f / f"{k}.h5", f / "rad.h5", "-o", f / f"dec_{k}.h5",
            "--quiet")
    others = [k for k in tables if k != "pre"]
    decs = [f / f"dec_{k}.h5" for k in others]
    cli("compare", f / "dec_pre.h5", *decs, "-o", f / "delta.csv", "--labels", ",".join(others),
        "--permutations", permutations, "--seed", seed, "--top", "0", "--quiet")
    cli("stats", f / "dec_pre.h5", *decs, "-o", f / "table.csv", "--labels", ",".join(others),
        "--quiet")
    df = pd.read_csv(f / "delta.csv")
    tab = pd.read_csv(f / "table.csv", keep_default_na=False)
    rows = []
    for k in others:
        s, t = df[df.checkpoint == k], tab[tab.checkpoint == k]
        row = {"cohort": f"{n}x{d}:{seed}", "condition": k,
               "n_train": int((rad.split == "train").sum()),
               "frac_q": float((s.q_bh < 0.05).mean()),
               "groups_q": int((t.q_bh < 0.05).sum()), "n_groups": len(t),
               "mean_dr2": float(s.delta_r2.mean()),
               "mean_dr2_direct": float(s.delta_r2_direct.mean())}
        if k == "planted":
            row["p10_gain"] = precision_at(s, sets["up"], 10, "rank_gain")
            row["p10_loss"] = precision_at(s, sets["down"], 10, "rank_loss")
        rows.append(row)
    return rows


def summarise(rows):
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = ["| condition | cohorts | features q_bh<0.05: mean (max) | Table-1 groups q_bh<0.05: "
             "cohorts with any (max) | mean Δr²: range | mean Δr² share-free: range | verdict |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for cond in NULLS + EXTRA + ("planted",):
        s = df[df.condition == cond]
        if not len(s):
            continue
        if cond == "planted":
            ok = (s.p10_gain >= 0.9).all() and (s.p10_loss >= 0.9).all()
            verdict = (f"p@10 gain min {s.p10_gain.min():.2f}, loss min {s.p10_loss.min():.2f}"
                       f" {'ok' if ok else 'FAIL'}")
        else:
            ok = ((s.frac_q <= 0.05).all() and (s.groups_q == 0).all()
                  and (s.mean_dr2.abs() <= 0.02).all())
            verdict = "ok" if ok else "FAIL"
        lines.append(f"| {cond} | {len(s)} | {100 * s.frac_q.mean():.1f} % "
                     f"({100 * s.frac_q.max():.1f} %) | {int((s.groups_q > 0).sum())} "
                     f"({s.groups_q.max()} of {s.n_groups.max()}) | {s.mean_dr2.min():+.3f} … "
                     f"{s.mean_dr2.max():+.3f} | {s.mean_dr2_direct.min():+.3f} … "
                     f"{s.mean_dr2_direct.max():+.3f} | {verdict} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohorts", default=",".join(DEFAULT_COHORTS),
                    help="comma-separated NxD:SEED (default: %(default)s)")
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--csv", help="also write the per-cohort rows here")
    ap.add_argument("--per-cohort", action="store_true", help="print every cohort's rows")
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for spec in a.cohorts.split(","):
            nd, seed = spec.split(":")
            n, d = map(int, nd.split("x"))
            new = run_cohort(n, d, int(seed), Path(tmp), a.permutations)
            rows += new
            if a.per_cohort:
                for r in new:
                    print(r, file=sys.stderr, flush=True)
    if a.csv:
        import pandas as pd

        pd.DataFrame(rows).to_csv(a.csv, index=False)
    print(summarise(rows))


if __name__ == "__main__":
    main()
