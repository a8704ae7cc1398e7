"""Alternatives to the symmetric lens's test, measured on cached re-split arrays (issue 23).

The symmetric lens (0.3.0's default) misses two of issue 23's "Done when" lines at
n = 2,000: planted recall (about 52 % of 24 planted columns, true |delta R^2| 0.10-0.15)
and the second-training-run null (up to 10.3 % of features in one cohort). This script
asks whether a different test on the SAME per-re-split numbers would meet them. It decodes
each cohort of radlens_cli.synth.reencode once (the default pipeline: fit_share_tables,
decode of the reference, `second_run` and `planted`), caches the re-split arrays (R^2 and
per-case squared errors) as .npz, and evaluates per feature, BH q < 0.05 over features,
against |delta| <= delta for delta in DELTAS:

- nb:        the lens's own Nadeau-Bengio corrected resampled t (se^2 = (1/R + n_test/n_train) s^2);
- naive:     the uncorrected t over re-splits (se^2 = s^2 / R; known liberal, the re-splits overlap);
- caseboot:  se from a case bootstrap over the union of test cases of mean_r (MSE_pre - MSE_ft)/var
             (test-case noise only: ignores the share/decoder refits' variance, so liberal);
- nb_centred: nb on D_r minus its median over decodable features in the same re-split (a flag
             then means "changed by more than delta relative to the checkpoint's common shift").

One CSV row per cohort, condition, test and delta. Nothing here is used by the lens.

    nice -n 10 python benchmarks/validity_alternatives.py --sizes 2000:5,400:3 --cache /tmp/alt
    python benchmarks/validity_alternatives.py --sizes 100:1 --cache /tmp/alt_smoke --out /tmp/alt.csv  # smoke, ~4 s
"""

from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CONDITIONS = ("second_run", "planted")
DELTAS = (0.03, 0.05, 0.08)
TESTS = ("nb", "naive", "caseboot", "nb_centred")
FIELDS = ["n", "seed", "condition", "test", "delta", "features", "flagged_pct", "planted",
          "planted_flagged", "unplanted_flagged", "median_shift", "planted_measured_below_0.07"]


def cache_cohort(n, seed, path, d=64):
    from radlens_cli.lens.steps import decode, fit_share_tables
    from radlens_cli.synth.reencode import make_cohort, tables

    coh = make_cohort(n, d=d, seed=seed, conditions=CONDITIONS)
    emb, rad = tables(coh)
    share = fit_share_tables(emb, rad, method="symmetric", device="cpu")
    pre = decode(share, emb, rad)
    out = {"pre_r2": pre.resplit["r2"], "pre_se": pre.resplit["squared_error"],
           "test_id": pre.resplit["test_case_id"].astype(str), "sizes": np.array(pre.sizes)}
    for c in CONDITIONS:
        ft = decode(share, tables(coh, c)[0], rad)
        out[c + "_r2"], out[c + "_se"] = ft.resplit["r2"], ft.resplit["squared_error"]
        out[c + "_truth"] = np.array([coh.truth[c][coh.columns.index(k)] for k in share.columns])
    np.savez(path, **out)


def caseboot_se(z, c, B=100, seed=0):
    """sd over B case-bootstrap draws (multinomial weights over the union of test cases) of
    mean_r (MSE_pre_r - MSE_ft_r) / var_r, var_r the reference's test variance of re-split r."""
    ids = z["test_id"]
    Rn, nt = ids.shape
    uni, inv = np.unique(ids, return_inverse=True)
    inv = inv.reshape(Rn, nt)
    ep, ef = z["pre_se"].astype(np.float64), z[c + "_se"].astype(np.float64)
    var = ep.mean(axis=1) / np.maximum(1 - z["pre_r2"], 1e-9)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(B):
        w = rng.multinomial(len(uni), np.full(len(uni), 1 / len(uni))).astype(np.float64)[inv]
        d = (np.einsum("rn,rnp->rp", w, ep) - np.einsum("rn,rnp->rp", w, ef)) / w.sum(1)[:, None] / var
        draws.append(d.mean(axis=0))
    return np.std(draws, axis=0, ddof=1)


def evaluate(z, n, seed, writer):
    from scipy.stats import norm, t as tdist

    from radlens_cli.lens.fdr import bh_fdr
    from radlens_cli.lens.interval import clipped

    n_s, n_d, n_t = (int(v) for v in z["sizes"])
    for c in CONDITIONS:
        D = clipped(z[c + "_r2"]) - clipped(z["pre_r2"])
        Rn = D.shape[0]
        dec = (clipped(z["pre_r2"]).mean(0) > 0.05) | (clipped(z[c + "_r2"]).mean(0) > 0.05)
        pl = z[c + "_truth"] != 0
        med = np.median(D[:, dec], axis=1, keepdims=True)
        bse = caseboot_se(z, c)
        for test in TESTS:
            DD = D - med if test == "nb_centred" else D
            m, s = DD.mean(axis=0), DD.std(axis=0, ddof=1)
            se = {"naive": s / np.sqrt(Rn), "caseboot": bse}.get(
                test, np.sqrt(1 / Rn + n_t / (n_s + n_d)) * s)
            dfree = np.inf if test == "caseboot" else Rn - 1
            for delta in DELTAS:
                z_ = (np.abs(m) - delta) / np.maximum(se, 1e-12)
                p = tdist.sf(z_, dfree) if np.isfinite(dfree) else norm.sf(z_)
                fl = bh_fdr(p) < 0.05
                writer.writerow({"n": n, "seed": seed, "condition": c, "test": test, "delta": delta,
                                 "features": len(m), "flagged_pct": 100 * fl.mean(),
                                 "planted": int(pl.sum()), "planted_flagged": int((fl & pl).sum()),
                                 "unplanted_flagged": int((fl & ~pl).sum()),
                                 "median_shift": float(med.mean()),
                                 "planted_measured_below_0.07": int((np.abs(D.mean(0)[pl]) < 0.07).sum())})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000:5,400:3", help="n:cohorts[:first seed],...")
    ap.add_argument("--cache", default="alt_cache", help="folder of the cached re-split arrays")
    ap.add_argument("--out", default="validity_alternatives.csv")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.makedirs(a.cache, exist_ok=True)
    with open(a.out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for spec in a.sizes.split(","):
            n, k, first = (tuple(int(x) for x in spec.split(":")) + (0,))[:3]
            for seed in range(first, first + k):
                path = os.path.join(a.cache, f"c_{n}_{seed}.npz")
                if not os.path.exists(path):
                    cache_cohort(n, seed, path)
                evaluate(np.load(path, allow_pickle=True), n, seed, w)
                fh.flush()


if __name__ == "__main__":
    main()
