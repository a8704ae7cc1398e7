"""Is the second training run's change a property of radlens's read-out, or of any read-out?

Issue 23 asks for a lens that flags planted changes of 0.05-0.15 R^2 while flagging at
most 5 % of features under a second training run at any cohort size. On
radlens_cli.synth.reencode's cohorts the second run (a new random network of the same
latents) moves single features' held-out decodability by as much as the planted
changes. This benchmark reads the same cohort through several probes, every one on the
lens's own re-splits (share 40 % / decoder 30 % / test 30 %), and prints per probe the
0.95 quantile of |mean delta R^2| (clipped at 0) over decodable features under the
second run, and the median |delta| of the planted columns:

- lens: the symmetric lens's probe (a share fitted per re-split, ridge decoder by GCV on
  its hidden units); the same fits as decode's;
- linear: a ridge decoder (GCV) on the standardised embeddings, no share;
- skip: the lens's decoder on [share hidden units, embeddings];
- krr: kernel ridge regression (RBF kernel, bandwidth from the data, alpha by GCV) on the
  share and decoder cases: a non-parametric read-out that fits no share at all.

It also prints how well each checkpoint's embeddings carry the latents themselves (kernel
ridge R^2 of each latent on 70 % of the cases): two random networks of the same latents
carry them to different degrees at finite n, which is a change in decodability for any
read-out.

    nice -n 10 python benchmarks/validity_probes.py --n 2000 --seeds 3      # about 6 min
    python benchmarks/validity_probes.py --n 100 --seeds 0                  # smoke run, ~4 s
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

PROBES = ("lens", "linear", "skip", "krr")


def r2_of(pred, y):
    return 1 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


def krr_fit_predict(Xtr, Ytr, Xte):
    """Kernel ridge (RBF, gamma = 1 / (2 d mean var)), alpha by GCV over a grid."""
    g = 1.0 / (2 * Xtr.shape[1] * Xtr.var(0).mean())

    def K(A, B):
        return np.exp(-g * ((A * A).sum(1)[:, None] + (B * B).sum(1)[None] - 2 * A @ B.T))

    w, V = np.linalg.eigh(K(Xtr, Xtr))
    w = np.clip(w, 0, None)
    ym = Ytr.mean(0)
    VY = V.T @ (Ytr - ym)
    n = len(Xtr)
    best = None
    for a in 10.0 ** np.arange(-4, 2.5, 0.5):
        f = w / (w + a)
        gcv = ((((Ytr - ym) - V @ (f[:, None] * VY)) ** 2).sum(0) / n / (1 - f.sum() / n) ** 2
               / np.maximum((Ytr - ym).var(0), 1e-12)).mean()
        if best is None or gcv < best[0]:
            best = (gcv, a)
    coef = V @ ((1 / (w + best[1]))[:, None] * VY)
    return K(Xte, Xtr) @ coef + ym


def probe_r2(proto, Xs, R, probe):
    """(R_resplits, p) held-out R^2 of one probe on every re-split."""
    from radlens_cli.lens.decoder import ridge_gcv
    from radlens_cli.lens.resplit import activate, fit_protocol_shares

    if probe in ("lens", "skip"):
        W, b = fit_protocol_shares(proto, Xs, R)
    out = np.empty((proto.n_resplits, R.shape[1]))
    for r in range(proto.n_resplits):
        s, di, ti = proto.parts(r)
        if probe == "krr":
            tr = np.concatenate([s, di])
            out[r] = r2_of(krr_fit_predict(Xs[tr], R[tr], Xs[ti]), R[ti])
            continue
        if probe == "linear":
            Zd, Zt = Xs[di], Xs[ti]
        else:
            Wr, br = W[r].astype(np.float64), b[r].astype(np.float64)
            Zd = activate(Xs[di] @ Wr + br, proto.activation)
            Zt = activate(Xs[ti] @ Wr + br, proto.activation)
            if probe == "skip":
                Zd, Zt = np.concatenate([Zd, Xs[di]], 1), np.concatenate([Zt, Xs[ti]], 1)
        _, _, dec = ridge_gcv(Zd, R[di], intercept=True)
        out[r] = r2_of(dec.predict(Zt), R[ti])
    return out


def latents_carried(coh, n):
    """Kernel ridge R^2 of each encoded latent from the pre-trained and second-run embeddings."""
    L = coh.latents
    tr, te = np.arange(int(0.7 * n)), np.arange(int(0.7 * n), n)
    out = {}
    for name, X in (("pre-trained", coh.emb_pre), ("second_run", coh.emb["second_run"])):
        X = (X - X[tr].mean(0)) / np.where(X[tr].std(0) > 0, X[tr].std(0), 1.0)
        out[name] = r2_of(krr_fit_predict(X[tr], L[tr], X[te]), L[te])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seeds", default="3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--encoder", default="saturating", help="the cohorts' random networks: saturating or smooth")
    a = ap.parse_args(argv)
    import torch

    from radlens_cli.lens.interval import clipped
    from radlens_cli.lens.resplit import protocol_inputs, protocol_of, standardise
    from radlens_cli.lens.steps import fit_share_tables
    from radlens_cli.synth.reencode import make_cohort, tables

    torch.set_num_threads(a.threads)
    rows = []
    for seed in (int(s) for s in a.seeds.split(",")):
        coh = make_cohort(a.n, d=64, seed=seed, conditions=("second_run", "planted"), encoder=a.encoder)
        emb, rad = tables(coh)
        share = fit_share_tables(emb, rad, method="symmetric", device="cpu")
        proto = protocol_of(share)
        tv = float(share.resplit["total_variance"][0])
        r2 = {}
        for cond in ("pre", "second_run", "planted"):
            X, R = protocol_inputs(share, proto, emb if cond == "pre" else tables(coh, cond)[0], rad)
            Xs, _ = standardise(X, tv)
            for probe in PROBES:
                t0 = time.time()
                r2[cond, probe] = clipped(probe_r2(proto, Xs, R, probe)).mean(axis=0)
                print(f"  seed {seed} {cond} {probe}: {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        truth = np.array([coh.truth["planted"][coh.columns.index(c)] for c in share.columns]) != 0
        for probe in PROBES:
            pre = r2["pre", probe]
            sec, pl = r2["second_run", probe] - pre, r2["planted", probe] - pre
            dec = (pre > 0.05) | (r2["second_run", probe] > 0.05)
            rows.append((seed, probe, pre[dec].mean(), np.quantile(np.abs(sec[dec]), 0.95),
                         np.abs(sec[dec]).max(), np.median(np.abs(pl[truth]))))
        lat = latents_carried(coh, a.n)
        print(f"\nseed {seed}: kernel ridge R^2 of each encoded latent ({coh.latents.shape[1]}), "
              f"70 % train / 30 % test")
        for k, v in lat.items():
            print(f"  {k:12s} " + " ".join(f"{x:.2f}" for x in v))
        print(f"  largest difference {np.abs(lat['pre-trained'] - lat['second_run']).max():.2f}")
    print(f"\nn = {a.n}; per probe: mean clipped R^2 of the pre-trained embeddings over decodable "
          f"features; second run: 0.95 quantile and max of |delta R^2| over decodable features; "
          f"planted: median |delta R^2| of the 24 planted columns (true 0.10-0.15)\n")
    print("| seed | probe | mean R² (pre) | second run q95 \\|Δ\\| | second run max \\|Δ\\| | planted median \\|Δ\\| |")
    print("|---|---|---|---|---|---|")
    for s, p, m, q, mx, pl in rows:
        print(f"| {s} | {p} | {m:.3f} | {q:.3f} | {mx:.3f} | {pl:.3f} |")


if __name__ == "__main__":
    main()
