"""Benchmark: READII negative controls on the phantom cohort (issue 28, docs/stability.md).

The pipeline and the measures are tests/negative_controls_pipeline.py's (the test runs a
smaller cohort): mean Spearman |rho| of each feature family with the embeddings, the
family's cross-validated ridge-decoder R^2, and the first-order changes, on the originals,
shuffled-roi and randomized-roi.

    python benchmarks/negative_controls.py [--cases 100 --size 48,48,10 --texture -j 2]
    python benchmarks/negative_controls.py --cases 12 --size 16,16,4 -j 1   # smoke run, ~10 s
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.negative_controls_pipeline import family_r2, family_rho, first_order_change, make_runs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--size", default="48,48,10")
    ap.add_argument("--texture", action="store_true", help="synth --texture")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--work", help="working folder (default: a temporary one)")
    a = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="radlens-nc-") as tmp:
        d = a.work or tmp
        os.makedirs(d, exist_ok=True)
        runs = make_runs(d, a.cases, a.size, a.texture, a.seed, a.jobs)
    rho = {name: family_rho(*runs[name]) for name in runs}
    r2 = {name: family_r2(*runs[name]) for name in runs}
    print(f"{a.cases} cases, size {a.size}, texture {a.texture}, seed {a.seed}: {time.perf_counter() - t0:.0f} s")
    print(f"null mean |rho| for n = {a.cases}: {np.sqrt(2 / np.pi / (a.cases - 1)):.3f}")
    orig, shuf, rand = (runs[k][0] for k in ("original", "shuffled-roi", "randomized-roi"))
    print(f"first order, relative change: shuffled-roi largest {first_order_change(orig, shuf).max():.2g}; "
          f"randomized-roi median {np.median(first_order_change(orig, rand)):.2g}")
    print("| family | mean |rho| original | shuffled-roi | randomized-roi "
          "| R^2 original | shuffled-roi | randomized-roi |")
    print("|:--|--:|--:|--:|--:|--:|--:|")
    for f in rho["original"]:
        print(f"| {f} | " + " | ".join(f"{rho[n][f]:.3f}" for n in runs) + " | "
              + " | ".join(f"{r2[n][f]:.2f}" for n in runs) + " |")


if __name__ == "__main__":
    main()
