"""The default lens pipeline for one checkpoint pair at the paper's size, 0.2.0's default
(--method calibrated-0.2) and 0.3.0's (symmetric) side by side (issue 23: <= 5 min on
2 CPU cores).

    nice -n 10 python benchmarks/lens_default.py [--n 1900] [--p 2511] [--d 768] [--threads 2]
    python benchmarks/lens_default.py --quick            # a smoke test of the script

The README's commands, no options but --method (and --device cpu), each stage its own
radlens process: fit-share EMB_PRE RADIOMICS; decode SHARE EMB_PRE; decode SHARE EMB_FT;
compare; stats. Wall time per stage and in all, and the CPU time (user + sys) of the
stage processes: on a machine shared with other jobs the wall time is an upper bound and
CPU time / threads the time an idle machine would take. torch and BLAS use --threads
threads (OMP_NUM_THREADS, MKL_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from paper_size import paper_cases, paper_columns  # benchmarks/paper_size.py (this folder)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def make_inputs(folder, n, d, p, seed=0):
    """Embeddings (pre; ft a partly new non-linear encoding of the same latents) and radiomics."""
    from radlens_cli.io.tables import CaseTable, write_table

    rng = np.random.default_rng(seed)
    ids, split = paper_cases(rng, n)
    k = 48
    U = rng.normal(size=(n, k))
    cols = paper_columns(p)
    R = np.tanh(U @ rng.normal(size=(k, p)) / np.sqrt(k)) + 0.5 * rng.normal(size=(n, p))
    write_table(CaseTable(ids, R, cols, split=split), os.path.join(folder, "rad.h5"), force=True)
    for name in ("emb_pre", "emb_ft"):
        A = rng.normal(size=(k, d)) / np.sqrt(k)
        E = np.maximum(U @ A + 0.2 * rng.normal(size=d), 0) + 0.1 * rng.normal(size=(n, d))
        write_table(CaseTable(ids, E, [f"e{j}" for j in range(d)], split=split),
                    os.path.join(folder, f"{name}.h5"), force=True)


def run_stage(args, threads):
    env = dict(os.environ, PYTHONPATH=REPO, TQDM_DISABLE="1", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "radlens_cli", "-q", *args], cwd=REPO, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"stage failed: {' '.join(args)}\n{r.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def pipeline(folder, method, threads):
    f = lambda x: os.path.join(folder, x)  # noqa: E731
    tag = method.replace(".", "")
    stages = [
        ("fit-share", ["fit-share", f("emb_pre.h5"), f("rad.h5"), "-o", f(f"share_{tag}.h5"),
                       "--method", method, "--device", "cpu", "-f"]),
        ("decode pre", ["decode", f(f"share_{tag}.h5"), f("emb_pre.h5"), f("rad.h5"), "-o",
                        f(f"dec_pre_{tag}.h5"), "-f"]),
        ("decode ft", ["decode", f(f"share_{tag}.h5"), f("emb_ft.h5"), f("rad.h5"), "-o",
                       f(f"dec_ft_{tag}.h5"), "-f"]),
        ("compare", ["compare", f(f"dec_pre_{tag}.h5"), f(f"dec_ft_{tag}.h5"), "-o",
                     f(f"delta_{tag}.csv"), "-f", "--top", "0"]),
        ("stats", ["stats", f(f"dec_pre_{tag}.h5"), f(f"dec_ft_{tag}.h5"), "-o",
                   f(f"table_{tag}.csv"), "-f"]),
    ]
    out = []
    for name, args in stages:
        wall, cpu = run_stage(args, threads)
        out.append((name, wall, cpu))
        print(f"    {method:<15} {name:<11} wall {wall:7.1f} s   cpu {cpu:7.1f} s", flush=True)
        if name == "fit-share":
            print(f"    {method:<15} share: {recorded_share(f(f'share_{tag}.h5'))}", flush=True)
    return out


def recorded_share(path) -> str:
    """What fit-share recorded of the share it fitted: hidden units, re-splits."""
    from radlens_cli.io.formats.share import load_share

    a = load_share(path)["attrs"]
    keys = [k for k in ("hidden", "hidden_from_rule", "n_resplits", "n_share", "n_decoder_train",
                        "n_test") if k in a]
    return ", ".join(f"{k}={a[k]}" for k in keys) or "(no size attributes found)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1900)
    ap.add_argument("--p", type=int, default=2511)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default="calibrated-0.2,symmetric")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test of the script)")
    ap.add_argument("--keep", help="keep the generated files in this folder")
    a = ap.parse_args()
    n, d, p = (300, 32, 100) if a.quick else (a.n, a.d, a.p)
    folder = a.keep or tempfile.mkdtemp(prefix="radlens-default-")
    os.makedirs(folder, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; "
          f"{n} cases x {p} radiomic columns, d={d}, default options, {a.threads} threads")
    try:
        make_inputs(folder, n, d, p)
        rows = {}
        for m in a.methods.split(","):
            rows[m] = pipeline(folder, m, a.threads)
        print("\n| method | " + " | ".join(s for s, _, _ in next(iter(rows.values())))
              + " | total wall | total CPU / threads |")
        print("|---" * (len(next(iter(rows.values()))) + 3) + "|")
        for m, r in rows.items():
            tw, tc = sum(x[1] for x in r), sum(x[2] for x in r)
            print(f"| {m} | " + " | ".join(f"{w:.0f} s" for _, w, _ in r)
                  + f" | {tw:.0f} s ({tw / 60:.1f} min) | {tc / a.threads:.0f} s "
                    f"({tc / a.threads / 60:.1f} min) |")
    finally:
        if not a.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
