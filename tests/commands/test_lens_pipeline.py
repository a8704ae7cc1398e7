"""fit-share, decode, compare and stats through the real CLI."""

import io

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radlens_cli.io.tables import CaseTable, write_table
from tests.conftest import LENS_FIT as FIT
from tests.planted import planted_cohort

DELTA_COLS = ["checkpoint", "column", "modality", "image_type", "family", "feature", "r2_pre",
              "r2_ft", "delta_r2", "importance_pre", "importance_ft", "delta_importance",
              "decodable", "p_null", "q_bh", "test", "rank_gain", "rank_loss", "r2_direct_pre",
              "r2_direct_ft", "delta_r2_direct"]


def _run(*args, input=None):
    from radlens_cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
    assert r.exit_code == 0, f"{args}: {r.stderr}"
    return r


def test_planted_end_to_end_delta_r2_ranks_both_sets(lens_run):
    d, P = lens_run
    r = _run("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", d / "delta_r2.csv",
             "--rank-by", "delta_r2", "--top", "5")
    assert "largest gains" in r.stderr and "least changed" in r.stderr
    df = pd.read_csv(d / "delta_r2.csv")
    assert list(df.columns) == DELTA_COLS
    top = df.sort_values("rank_gain").column[:10]
    bottom = df.sort_values("rank_loss").column[:10]
    assert np.mean([c in P.up for c in top]) >= 0.9
    assert np.mean([c in P.down for c in bottom]) >= 0.9
    # the paper's numbers are there unchanged: I = ||theta_k||, from the decoders' theta
    with h5py.File(d / "dec_pre.h5") as fp, h5py.File(d / "dec_ft.h5") as ff:
        ip, ift = np.linalg.norm(fp["theta"][()], axis=1), np.linalg.norm(ff["theta"][()], axis=1)
        np.testing.assert_allclose(df.importance_pre, ip, rtol=1e-9)
        np.testing.assert_allclose(df.delta_importance, ift - ip, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(df.r2_pre, fp["r2"][()], rtol=1e-9)
        assert fp.attrs["share_hash"] == ff.attrs["share_hash"]
        assert fp["eval/squared_error"].shape == (120, 90)


def test_planted_stats_show_the_lost_group(lens_run):
    d, P = lens_run
    _run("stats", d / "dec_pre.h5", d / "dec_ft.h5", "-o", d / "table.csv")
    t = pd.read_csv(d / "table.csv", keep_default_na=False)
    assert list(t.columns) == ["checkpoint", "group_by", "group", "n_features", "mse_pre", "r2_pre",
                               "mse_ft", "r2_ft", "wilcoxon_p", "stars", "q_bh"]
    assert (t.checkpoint == "dec_ft").all()
    lost = t[(t.group_by == "family") & (t.group == "glszm")].iloc[0]     # S_down's family
    assert lost.r2_ft < lost.r2_pre - 0.3 and lost.q_bh < 0.001 and lost.stars == "***"
    # stars follow q_bh, not the raw p
    from radlens_cli.lens.fdr import stars
    assert list(t.stars) == list(stars(t.q_bh.to_numpy()))
    gained = t[(t.group_by == "family") & (t.group == "ngtdm")].iloc[0]   # S_up's family
    assert gained.r2_ft > gained.r2_pre + 0.3
    assert set(t.group_by) == {"family", "image_type", "modality", "modality_family"}
    assert set(t[t.group_by == "image_type"].group) == {"original", "wavelet"}
    r = _run("stats", d / "dec_pre.h5", d / "dec_ft.h5", "-o", "-", "--format", "markdown",
             "--by", "family")
    assert "| GLSZM | Pre-train |" in r.stdout and "| Feature | Stage | MSE ↓ | R² ↑ |" in r.stdout


def test_compare_bootstrap_permutations_summary(lens_run):
    d, _ = lens_run
    _run("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", d / "dp.csv", "--bootstrap", "4",
         "--permutations", "9", "--summary", d / "views.txt", "--top", "3", "--seed", "2")
    df = pd.read_csv(d / "dp.csv")
    assert list(df.columns) == DELTA_COLS + ["delta_r2_ci_low", "delta_r2_ci_high", "p_perm",
                                             "q_perm"]
    assert ((df.p_perm >= 0.1 - 1e-12) & (df.p_perm <= 1)).all()      # (1 + k) / 10
    assert (df.delta_r2_ci_low <= df.delta_r2_ci_high).all()
    assert (df.test == "paired_t_sqerr").all()
    assert (d / "views.txt").read_text().count("\n  ") >= 9
    _run("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", d / "dp2.csv", "--bootstrap", "4",
         "--permutations", "9", "--top", "0", "--seed", "2")
    assert (d / "dp.csv").read_bytes() == (d / "dp2.csv").read_bytes()


def test_pipe_decode_into_compare_and_stats(lens_run, tmp_path):
    d, _ = lens_run
    r = _run("decode", d / "share.h5", d / "emb_ft.h5", d / "rad.h5", "-o", "-")
    assert r.stdout_bytes[:8] == b"\x89HDF\r\n\x1a\n"
    c = _run("compare", d / "dec_pre.h5", "-", "-o", "-", "--top", "0", input=r.stdout_bytes)
    df = pd.read_csv(io.StringIO(c.stdout))
    # the same comparison from files, made here (not one an earlier test may have written)
    _run("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "ref.csv", "--top", "0")
    ref = pd.read_csv(tmp_path / "ref.csv")
    assert len(df) == 90 and list(df.columns) == DELTA_COLS
    for col in ("r2_pre", "r2_ft", "delta_r2", "importance_ft", "p_null", "q_bh"):
        np.testing.assert_allclose(df[col], ref[col], rtol=1e-9, err_msg=col)
    s = _run("stats", d / "dec_pre.h5", "-", "-o", "-", input=r.stdout_bytes)
    assert s.stdout.startswith("checkpoint,group_by,group,n_features")
    # a piped decoder is named by the embeddings it recorded, not "stdin" (issue 25)
    assert pd.read_csv(io.StringIO(s.stdout)).checkpoint.eq("emb_ft").all()
    assert df.checkpoint.eq("emb_ft").all()
    s = _run("stats", d / "dec_pre.h5", "-", "-o", "-", "--labels", "finetuned", input=r.stdout_bytes)
    assert pd.read_csv(io.StringIO(s.stdout)).checkpoint.eq("finetuned").all()


def test_paths_with_spaces_and_same_seed(spaced_tmp, planted_files):
    p = planted_files
    a, b, c = spaced_tmp / "share a.h5", spaced_tmp / "share b.h5", spaced_tmp / "share c.h5"
    _run("fit-share", p["emb_pre"], p["rad"], "-o", a, *FIT)
    _run("fit-share", p["emb_pre"], p["rad"], "-o", b, *FIT)
    _run("fit-share", p["emb_pre"], p["rad"], "-o", c, "--hidden", "64", "--epochs", "3", "--seed", "1", "--device", "cpu",
         "--method", "calibrated-0.2")
    with h5py.File(a) as fa, h5py.File(b) as fb, h5py.File(c) as fc:
        for k in ("weight", "bias", "scale_offset", "scale_factor"):
            assert np.array_equal(fa[k][()], fb[k][()])
        assert fa.attrs["share_hash"] == fb.attrs["share_hash"] != fc.attrs["share_hash"]
        assert not np.allclose(fa["weight"][()], fc["weight"][()])
    out = spaced_tmp / "dec pre.h5"
    _run("decode", a, p["emb_pre"], p["rad"], "-o", out)
    assert out.exists()


def test_sweep_writes_grid_scores(planted_files, tmp_path):
    p = planted_files
    _run("fit-share", p["emb_pre"], p["rad"], "-o", tmp_path / "s.h5", "--sweep", "--sweep-scores",
         tmp_path / "sweep.csv", "--hidden", "16", "--epochs", "1", "--device", "cpu")
    sw = pd.read_csv(tmp_path / "sweep.csv")
    assert len(sw) == 24 and sw.selected.sum() == 1
    assert sw.loc[sw.selected, "val_l1"].item() == sw.val_l1.min()
    with h5py.File(tmp_path / "s.h5") as f:
        assert f["sweep/val_l1"].shape == (24,)
        assert f.attrs["radlens_schema"] == "share-model/1"


def _tables(P, **changes):
    return {k: changes.get(k, v) for k, v in
            (("emb_pre", P.emb_pre), ("emb_ft", P.emb_ft), ("rad", P.rad))}


def test_constant_and_nonfinite_columns_dropped_and_listed(planted, tmp_path, cli):
    rad = planted.rad.take()
    rad.values = rad.values.copy()
    rad.values[:, 0] = 5.0
    tr = np.flatnonzero(rad.split == "train")
    rad.values[tr[3], 1] = np.nan
    write_table(rad, str(tmp_path / "rad.h5"))
    write_table(planted.emb_pre, str(tmp_path / "emb.h5"))
    r = cli("fit-share", tmp_path / "emb.h5", tmp_path / "rad.h5", "-o", tmp_path / "s.h5", *FIT)
    assert r.exit_code == 0, r
    assert f"dropped radiomic column {rad.columns[0]}: constant on train" in r.stderr
    assert f"dropped radiomic column {rad.columns[1]}: non-finite on train (1 case(s))" in r.stderr
    with h5py.File(tmp_path / "s.h5") as f:
        assert [x.decode() for x in f["dropped_columns"][()]] == rad.columns[:2]
        assert f["columns"].shape == (88,)
    r = cli("decode", tmp_path / "s.h5", tmp_path / "emb.h5", tmp_path / "rad.h5", "-o", tmp_path / "d.h5")
    assert r.exit_code == 0, r
    with h5py.File(tmp_path / "d.h5") as f:
        for k in ("theta", "r2", "mse", "eval/prediction", "eval/squared_error"):
            assert np.isfinite(f[k][()]).all(), k


def test_h_at_least_n_train_falls_back_to_ridge(tmp_path, cli):
    P = planted_cohort(n=60, n_train=20, n_val=10, d=16, n_noise=2)
    write_table(P.emb_pre, str(tmp_path / "e.h5"))
    write_table(P.rad, str(tmp_path / "r.h5"))
    r = cli("fit-share", tmp_path / "e.h5", tmp_path / "r.h5", "-o", tmp_path / "s.h5", "--hidden", "32",
            "--epochs", "1", "--device", "cpu", "--method", "paper")
    assert r.exit_code == 0, r
    write_table(P.emb_ft, str(tmp_path / "f.h5"))
    for emb, out in (("e.h5", "d.h5"), ("f.h5", "d2.h5")):
        r = cli("decode", tmp_path / "s.h5", tmp_path / emb, tmp_path / "r.h5", "-o", tmp_path / out)
        assert r.exit_code == 0, r
    # the fallback alpha is computed once, in fit-share, and every checkpoint uses it
    with h5py.File(tmp_path / "s.h5") as s, h5py.File(tmp_path / "d.h5") as f, \
            h5py.File(tmp_path / "d2.h5") as g:
        assert s.attrs["ridge"] > 0 and f.attrs["ridge"] == g.attrs["ridge"] == s.attrs["ridge"]
        assert f.attrs["n_train"] == 20 and f.attrs["hidden"] == 32


# ---------------------------------------------------------------- bad inputs

def test_disjoint_and_partly_overlapping_cases(planted, tmp_path, cli):
    emb = planted.emb_pre
    other = CaseTable(np.array([f"x{i}" for i in range(emb.n_cases)], dtype=object), emb.values,
                      emb.columns, split=emb.split)
    write_table(other, str(tmp_path / "other.h5"))
    write_table(planted.rad, str(tmp_path / "rad.h5"))
    r = cli("fit-share", tmp_path / "other.h5", tmp_path / "rad.h5", "-o", tmp_path / "s.h5", *FIT)
    assert r.exit_code == 1 and "share no case_id" in r.stderr
    part = emb.take(np.arange(30, emb.n_cases))
    write_table(part, str(tmp_path / "part.h5"))
    r = cli("fit-share", tmp_path / "part.h5", tmp_path / "rad.h5", "-o", tmp_path / "s.h5", *FIT)
    assert r.exit_code == 1
    assert "30 case(s) only in" in r.stderr and "case0000" in r.stderr and "--allow-missing" in r.stderr
    assert not (tmp_path / "s.h5").exists()
    r = cli("fit-share", tmp_path / "part.h5", tmp_path / "rad.h5", "-o", tmp_path / "s.h5", *FIT,
            "--allow-missing")
    assert r.exit_code == 0, r
    assert "--allow-missing: using the 570 case(s)" in r.stderr
    write_table(emb, str(tmp_path / "emb.h5"))
    r = cli("decode", tmp_path / "s.h5", tmp_path / "part.h5", tmp_path / "rad.h5", "-o", tmp_path / "d1.h5",
            "--allow-missing")
    assert r.exit_code == 0, r
    r = cli("decode", tmp_path / "s.h5", tmp_path / "emb.h5", tmp_path / "rad.h5", "-o", tmp_path / "d2.h5")
    assert r.exit_code == 0, r
    r = cli("compare", tmp_path / "d1.h5", tmp_path / "d2.h5", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1 and "only in" in r.stderr and "(train cases)" in r.stderr
    r = cli("compare", tmp_path / "d1.h5", tmp_path / "d2.h5", "-o", tmp_path / "x.csv", "--allow-missing",
            "--permutations", "3", "--top", "0")
    assert r.exit_code == 0, r
    r = cli("stats", tmp_path / "d1.h5", tmp_path / "d2.h5", "-o", tmp_path / "t.csv")
    assert r.exit_code == 1 and "(eval cases)" in r.stderr


def test_decoders_of_different_share_models_refused(lens_run, planted_files, tmp_path, cli):
    d, _ = lens_run
    p = planted_files
    r = cli("fit-share", p["emb_pre"], p["rad"], "-o", tmp_path / "s2.h5", *FIT[:-4], "--seed", "5",
            "--device", "cpu")
    assert r.exit_code == 0, r
    r = cli("decode", tmp_path / "s2.h5", p["emb_ft"], p["rad"], "-o", tmp_path / "d.h5")
    assert r.exit_code == 0, r
    for cmd in ("compare", "stats"):
        r = cli(cmd, d / "dec_pre.h5", tmp_path / "d.h5", "-o", tmp_path / f"{cmd}.csv")
        assert r.exit_code == 1 and "different share models" in r.stderr, r
        assert not (tmp_path / f"{cmd}.csv").exists()


def test_nan_in_embeddings(lens_run, planted, tmp_path, cli):
    d, _ = lens_run
    emb = planted.emb_ft.take()
    emb.values = emb.values.copy()
    emb.values[7, 3] = np.nan
    write_table(emb, str(tmp_path / "e.h5"))
    r = cli("decode", d / "share.h5", tmp_path / "e.h5", d / "rad.h5", "-o", tmp_path / "d.h5")
    assert r.exit_code == 1
    assert "non-finite embedding value at case case0007, dim 3" in r.stderr


def test_missing_split(lens_run, planted, tmp_path, cli):
    d, _ = lens_run
    e, r_ = planted.emb_pre.take(), planted.rad.take()
    e.split = r_.split = None
    write_table(e, str(tmp_path / "e.h5"))
    write_table(r_, str(tmp_path / "r.h5"))
    r = cli("fit-share", tmp_path / "e.h5", tmp_path / "r.h5", "-o", tmp_path / "s.h5", *FIT)
    assert r.exit_code == 1 and "has a `split` dataset" in r.stderr
    r = cli("decode", d / "share.h5", d / "emb_ft.h5", d / "rad.h5", "-o", tmp_path / "d.h5",
            "--eval-split", "holdout")
    assert r.exit_code == 1 and "no `holdout` cases for evaluation" in r.stderr


def test_output_exists_without_force(lens_run, cli, tmp_path):
    d, _ = lens_run
    (tmp_path / "old.csv").write_text("x\n")
    for args in (("decode", d / "share.h5", d / "emb_ft.h5", d / "rad.h5", "-o", d / "dec_ft.h5"),
                 ("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "old.csv"),
                 ("stats", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "old.csv"),
                 ("fit-share", d / "emb_pre.h5", d / "rad.h5", "-o", d / "share.h5")):
        r = cli(*args)
        assert r.exit_code == 1 and f"output exists: {args[-1]}" in r.stderr, r


def test_output_names_of_another_format_are_refused_before_the_work(lens_run, cli, tmp_path):
    """Issue 25: `compare -o delta.xlsx` wrote CSV text into a spreadsheet's name and exited 0;
    `-o delta.h5` was refused only after computing."""
    d, _ = lens_run
    for cmd, name, needle in (("compare", "delta.xlsx", ".xlsx is not a format it writes"),
                              ("compare", "dec_ft.h5", "the name says HDF5"),
                              ("stats", "table.xlsx", "name it *.csv"),
                              ("cka", "cka.h5", "name it *.csv")):
        ins = (d / "emb_pre.h5", d / "emb_ft.h5") if cmd == "cka" else (d / "dec_pre.h5", d / "dec_ft.h5")
        # --bootstrap/--permutations make the work long: a refusal after it would time out the test
        extra = ("--permutations", "100000") if cmd == "compare" else ()
        r = cli(cmd, *ins, "-o", tmp_path / name, "-f", *extra)
        assert r.exit_code == 2 and needle in r.stderr, r
        assert not (tmp_path / name).exists()


def test_usage_errors(lens_run, cli):
    d, _ = lens_run
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", "-", "--rank-by", "nope")
    assert r.exit_code == 2 and "--rank-by must be one of" in r.stderr
    r = cli("stats", d / "dec_pre.h5", d / "dec_ft.h5", "-o", "-", "--by", "colour")
    assert r.exit_code == 2 and "unknown grouping colour" in r.stderr
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", "-", "--summary", "-")
    assert r.exit_code == 2 and "cannot both be `-`" in r.stderr
    r = cli("compare", "-", "-", "-o", "x.csv")
    assert r.exit_code == 2 and "only one input can be `-`" in r.stderr
    r = cli("compare", d / "share.h5", d / "dec_ft.h5", "-o", "-")
    assert r.exit_code == 1 and "is a radlens share-model/1, expected decoder/1" in r.stderr


def test_csv_inputs_metadata_parsed_and_nonfinite_eval_case_left_out(planted, tmp_path, cli):
    rad = planted.rad.take()
    rad.column_meta = {}                                   # CSV carries no metadata datasets
    rad.values = rad.values.copy()
    te = np.flatnonzero(rad.split == "test")
    rad.values[te[0], 5] = np.inf
    write_table(rad, str(tmp_path / "rad.csv"))
    write_table(planted.emb_pre, str(tmp_path / "emb.csv"))
    r = cli("fit-share", tmp_path / "emb.csv", tmp_path / "rad.csv", "-o", tmp_path / "s.h5", *FIT)
    assert r.exit_code == 0, r
    r = cli("decode", tmp_path / "s.h5", tmp_path / "emb.csv", tmp_path / "rad.csv", "-o", tmp_path / "d.h5")
    assert r.exit_code == 0, r
    assert f"1 test case(s) with non-finite radiomics in the share model's columns left out: " \
           f"{rad.case_id[te[0]]}" in r.stderr
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["eval/case_id"].shape == (len(te) - 1,)
        assert np.isfinite(f["eval/squared_error"][()]).all()
        assert [x.decode() for x in f["dropped_case_id"][()]] == [rad.case_id[te[0]]]
    r = cli("compare", tmp_path / "d.h5", tmp_path / "d.h5", "-o", "-", "--top", "0")
    assert r.exit_code == 0, r
    df = pd.read_csv(io.StringIO(r.stdout))
    row = df[df.column == rad.columns[0]].iloc[0]
    assert (row.modality, row.image_type, row.family, row.feature) == tuple(
        rad.columns[0].replace("/", "_").split("_", 3))
    assert (df.delta_importance == 0).all() and (df.delta_r2 == 0).all()


def test_same_decoder_twice_warns(lens_run, tmp_path):
    d, _ = lens_run
    for cmd in ("stats", "compare"):
        r = _run(cmd, d / "dec_pre.h5", d / "dec_pre.h5", "-o", tmp_path / f"{cmd}.csv")
        assert "identical decoders" in r.stderr
    r = _run("stats", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "ok.csv")
    assert "identical decoders" not in r.stderr


# ---------------------------------------------------------------- checks of issue 10

def test_stats_and_compare_refuse_decoders_decoded_differently(lens_run, tmp_path, cli):
    d, _ = lens_run
    for extra, what in ((("--ridge", "0.5"), "ridge"), (("--no-intercept",), "intercept"),
                        (("--align", "whitened"), "alignment")):
        out = tmp_path / f"d_{what}.h5"
        r = cli("decode", d / "share.h5", d / "emb_ft.h5", d / "rad.h5", "-o", out, *extra)
        assert r.exit_code == 0, r
        for cmd in ("compare", "stats"):
            r = cli(cmd, d / "dec_pre.h5", out, "-o", tmp_path / f"{cmd}.csv")
            assert r.exit_code == 1 and f"differ in {what}" in r.stderr, (cmd, what, r.stderr)


def test_different_preprocessing_refused_unless_allowed(tmp_path, cli):
    import json

    from tests.lens.generators import cohort

    C = cohort(n=200, d=16, seed=3)
    pre, ft = C.pre(), C.embed({"A": 1.0, "up": 1.0}, "ft")

    def params(spacing, layer="last"):
        return {"params": json.dumps({"preprocessing": {"spacing": spacing, "crop": [224, 224, 64],
                                                        "norm": "zscore"}, "layer": layer,
                                      "pool": "mean"})}

    write_table(C.rad, str(tmp_path / "rad.h5"))
    write_table(pre, str(tmp_path / "pre.h5"), attrs=params([1, 1, 2]))
    write_table(ft, str(tmp_path / "ft.h5"), attrs=params([2, 2, 4]))
    write_table(ft, str(tmp_path / "ft_layer.h5"), attrs=params([1, 1, 2], "stage3"))
    _run("fit-share", tmp_path / "pre.h5", tmp_path / "rad.h5", "-o", tmp_path / "s.h5", *FIT)
    r = cli("decode", tmp_path / "s.h5", tmp_path / "ft.h5", tmp_path / "rad.h5", "-o", tmp_path / "d.h5")
    assert r.exit_code == 1 and "spacing (1,1,2 vs 2,2,4)" in r.stderr
    r = cli("decode", tmp_path / "s.h5", tmp_path / "ft_layer.h5", tmp_path / "rad.h5", "-o",
            tmp_path / "d.h5")
    assert r.exit_code == 1 and "layer (last vs stage3)" in r.stderr
    r = cli("decode", tmp_path / "s.h5", tmp_path / "ft.h5", tmp_path / "rad.h5", "-o", tmp_path / "d.h5",
            "--allow-different-preprocessing")
    assert r.exit_code == 0 and "spacing" in r.stderr
    _run("decode", tmp_path / "s.h5", tmp_path / "pre.h5", tmp_path / "rad.h5", "-o", tmp_path / "p.h5")
    r = cli("compare", tmp_path / "p.h5", tmp_path / "d.h5", "-o", tmp_path / "x.csv")
    assert r.exit_code == 1 and "spacing (1,1,2 vs 2,2,4)" in r.stderr
    r = cli("compare", tmp_path / "p.h5", tmp_path / "d.h5", "-o", tmp_path / "x.csv", "--top", "0",
            "--allow-different-preprocessing")
    assert r.exit_code == 0, r


def test_labels_collisions_and_permutation_count_warning(lens_run, tmp_path, cli):
    d, _ = lens_run
    (tmp_path / "a").mkdir()
    import shutil
    shutil.copy(d / "dec_ft.h5", tmp_path / "a" / "dec_ft.h5")
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", tmp_path / "a" / "dec_ft.h5", "-o", "-")
    assert r.exit_code == 2 and "'dec_ft' is given twice" in r.stderr and "--labels" in r.stderr
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", "-", "--labels", "a,b")
    assert r.exit_code == 2 and "--labels has 2 name(s) for 1" in r.stderr
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", tmp_path / "p.csv", "--permutations",
            "9", "--top", "0")
    assert r.exit_code == 0, r
    assert "with 9 permutations the smallest p_perm is 1/10" in r.stderr and "1799 permutations" in r.stderr
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", tmp_path / "a" / "dec_ft.h5", "-o", "-",
            "--labels", "ft,copy", "--top", "0")
    df = pd.read_csv(io.StringIO(r.stdout))
    assert list(df.checkpoint.unique()) == ["ft", "copy"]
    a, b = df[df.checkpoint == "ft"].reset_index(drop=True), df[df.checkpoint == "copy"].reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns="checkpoint"), b.drop(columns="checkpoint"))


def test_method_paper_reproduces_the_paper(planted_files, tmp_path):
    p = planted_files
    _run("fit-share", p["emb_pre"], p["rad"], "-o", tmp_path / "s.h5", *FIT, "--method", "paper")
    for k in ("emb_pre", "emb_ft"):
        _run("decode", tmp_path / "s.h5", p[k], p["rad"], "-o", tmp_path / f"dec_{k}.h5")
    with h5py.File(tmp_path / "s.h5") as s, h5py.File(tmp_path / "dec_emb_ft.h5") as f:
        assert s.attrs["method"] == "paper" and s.attrs["scale"] == "minmax"
        assert "reference_embeddings" not in s and s.attrs["ridge"] == 0
        assert f.attrs["intercept"] == 0 and f.attrs["alignment"] == "none" and f.attrs["ridge"] == 0
        assert not f["bias"][()].any()
        tgt = f["train/target"][()]
        assert tgt.min() == pytest.approx(0, abs=1e-6) and tgt.max() == pytest.approx(1, abs=1e-6)
    r = _run("compare", tmp_path / "dec_emb_pre.h5", tmp_path / "dec_emb_ft.h5", "-o", tmp_path / "d.csv")
    assert "ranked by delta_importance" in r.stderr           # the paper's statistic
    df = pd.read_csv(tmp_path / "d.csv")
    dec = df[df.decodable]
    assert dec.loc[dec.delta_importance.idxmax(), "rank_gain"] == 1
