"""The arithmetic of the default lens for one checkpoint pair at the paper's size, on one
thread, as CPU time (issue 23's <= 5 min on 2 CPU cores; companion of lens_default.py,
whose wall times a shared machine inflates).

    python benchmarks/lens_default_work.py [--epochs-measured 3]
    python benchmarks/lens_default_work.py --n 100 --p 10 --d 8 --epochs-measured 1   # smoke run, ~4 s

One thread's CPU time is an upper bound of an idle 2-core machine's wall time for the
same work. The share fits are timed for --epochs-measured steps and scaled to the
method's epochs (every step does the same work); the decoders, the exact-map check and
the tests run in full. Paper size: 1,900 cases (train/val/test 70/10/20 %), 2,511
radiomic columns, d = 768, h = 256.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def cpu(f, *a, **k):
    t = time.process_time()
    out = f(*a, **k)
    return out, time.process_time() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs-measured", type=int, default=3)
    ap.add_argument("--n", type=int, default=1900)
    ap.add_argument("--p", type=int, default=2511)
    ap.add_argument("--d", type=int, default=768)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    from radlens_cli.lens import interval, resplit
    from radlens_cli.lens.share import train_share

    rng = np.random.default_rng(0)
    n, p, d, h = a.n, a.p, a.d, 256
    m = int(round(0.9 * n))                    # train + test: the re-split pool
    ids = [f"c{i:05d}" for i in range(m)]
    _, assignment = resplit.make_resplits(ids, resplit.N_RESPLITS, 0)
    proto = resplit.Protocol(case_id=np.array(ids, dtype=object), assignment=assignment, hidden=h,
                             activation="relu", l1=1e-6, l2=1e-5, epochs=a.epochs_measured,
                             lr=resplit.LR, seed=0)
    X = rng.normal(size=(m, d))
    R = rng.normal(size=(m, p))
    E = a.epochs_measured
    (W, b), t_fit = cpu(resplit.fit_protocol_shares, proto, X, R)
    fit_sym = t_fit / E * resplit.EPOCHS
    _, t_dec = cpu(resplit.decode_protocol, proto, X, R, W, b)
    _, t_check = cpu(resplit.same_information, X + rng.normal(size=X.shape) * 0.1, X)
    r2 = rng.normal(size=(resplit.N_RESPLITS, p)) * 0.05
    _, t_test = cpu(interval.corrected_resampled_t, r2, 1000, 500, 0.05)
    sym = 2 * fit_sym + 2 * t_dec + t_check + t_test
    # 0.2.0's default: one share on half the train cases, 200 epochs of mini-batches of 256
    n_tr = int(round(0.7 * n))
    Xs, Rs = X[: n_tr // 2].astype(np.float32), R[: n_tr // 2].astype(np.float32)
    _, t_cal = cpu(train_share, Xs, Rs, hidden=h, epochs=E, batch_size=256)
    cal = t_cal / E * 200
    print(f"one thread, CPU time; {n} cases x {p} columns, d={d}, h={h}; share fits timed for "
          f"{E} steps/epochs and scaled")
    print("| method | share fits | decoders | checks and tests | total (one pair) |")
    print("|---|---|---|---|---|")
    print(f"| symmetric (0.3.0 default) | 2 x {fit_sym:.0f} s ({resplit.N_RESPLITS} re-splits x "
          f"{resplit.EPOCHS} full-batch steps, batched) | 2 x {t_dec:.1f} s | {t_check + t_test:.1f} s | "
          f"{sym:.0f} s ({sym / 60:.1f} min) |")
    print(f"| calibrated-0.2 (0.2.0 default) | {cal:.0f} s (200 epochs, batch 256) | see benchmarks/lens.py "
          f"(b) | | >= {cal:.0f} s ({cal / 60:.1f} min) |")


if __name__ == "__main__":
    main()
