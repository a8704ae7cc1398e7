"""The lens's calibration on generators independent of tests/lens/generators.py
(benchmarks/validity_independent.py): CNN-like ReLU embeddings (non-negative, skewed,
dead dims), skewed / heavy-tailed radiomics with pyradiomics-style names, and d ABOVE
the number of train cases (n = 200: 140 train, d = 192).

With d >= n_train, Procrustes fitted on the train cases alone leaves the map arbitrary on
the directions the train cases do not span; test cases have components there, so a pure
rotation, permutation, rescaling or shift of the embeddings read as lost decodability
(mean delta_r2 -0.04 to -0.06 at 300 x 256 with default options). The alignment is now
fitted on the embeddings of every case (no radiomics), which determines it on every case
decoded. Through the real CLI, small share (h = 32, 10 epochs) to stay fast.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from radlens_cli.io.tables import write_table

_spec = importlib.util.spec_from_file_location(
    "validity_independent",
    Path(__file__).resolve().parents[2] / "benchmarks" / "validity_independent.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)

FIT = ("--hidden", "32", "--epochs", "10", "--device", "cpu", "--seed", "3", "--method", "calibrated-0.2")


def _run(*args):
    from radlens_cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, f"{args}: {r.stderr}"


def test_exact_nulls_with_more_dims_than_train_cases(tmp_path):
    rad, tables, sets = gen.make_cohort(200, 192, 3)
    assert (rad.split == "train").sum() < 192
    X = tables["pre"].values
    assert (X >= 0).all() and (X == 0).all(axis=0).any()      # ReLU: non-negative, dead dims
    keep = ("pre", "rotation", "permutation", "scale", "shift", "combined", "planted")
    write_table(rad, str(tmp_path / "rad.h5"))
    for k in keep:
        write_table(tables[k], str(tmp_path / f"{k}.h5"))
    _run("fit-share", tmp_path / "pre.h5", tmp_path / "rad.h5", "-o", tmp_path / "s.h5", *FIT)
    for k in keep:
        _run("decode", tmp_path / "s.h5", tmp_path / f"{k}.h5", tmp_path / "rad.h5", "-o",
             tmp_path / f"{k}.dec.h5")
    others = keep[1:]
    _run("compare", tmp_path / "pre.dec.h5", *[tmp_path / f"{k}.dec.h5" for k in others],
         "-o", tmp_path / "d.csv", "--labels", ",".join(others), "--top", "0")
    _run("stats", tmp_path / "pre.dec.h5", *[tmp_path / f"{k}.dec.h5" for k in others],
         "-o", tmp_path / "t.csv", "--labels", ",".join(others))
    df = pd.read_csv(tmp_path / "d.csv")
    tab = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    for k in others[:-1]:
        s, t = df[df.checkpoint == k], tab[tab.checkpoint == k]
        assert np.abs(s.delta_r2).max() < 1e-6, (k, s.delta_r2.abs().max())
        assert (s.q_bh < 0.05).sum() == 0 and (t.q_bh < 0.05).sum() == 0, k
    # the planted checkpoint (tanh of a new projection: keeps A, loses `down`, gains `up`)
    # is still seen through the all-case alignment. This tiny share (h = 32, 10 epochs)
    # reaches 0.8 here; the default options' >= 0.9 is measured by the benchmark
    # (docs/validity.md, "Independent generators")
    s = df[df.checkpoint == "planted"]
    assert gen.precision_at(s, sets["up"], 10, "rank_gain") >= 0.7
    assert gen.precision_at(s, sets["down"], 10, "rank_loss") >= 0.7
