"""The symmetric, re-split lens (0.3.0's default): its maths against independent
computations, and small fast versions of the validity properties of docs/validity.md
(benchmarks/validity_reencode.py runs the large ones) on radlens_cli.synth.reencode's
cohorts, which share nothing with the other lens fixtures."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radlens_cli.io.tables import write_table
from radlens_cli.lens import interval, resplit
from radlens_cli.synth.reencode import make_cohort, tables

SMALL = dict(hidden=128, epochs=100, lr=1e-2, n_resplits=6)


def _run(*args):
    from radlens_cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, f"{args}: {r.stderr}"
    return r


# ---------------------------------------------------------------- maths

def test_corrected_resampled_t_against_a_hand_computation():
    from scipy.stats import t as tdist

    rng = np.random.default_rng(0)
    D = rng.normal(0.08, 0.03, size=(10, 5))
    D[:, 1] = 0.0                       # identical in every re-split: p = 1
    D[:, 2] = 0.2                       # constant outside the interval: p = 0
    mean, se, p = interval.corrected_resampled_t(D, n_train=700, n_test=300, null_delta=0.05)
    for k in (0, 3, 4):
        d = D[:, k]
        s2 = sum((x - d.mean()) ** 2 for x in d) / 9
        se_k = np.sqrt((1 / 10 + 300 / 700) * s2)
        assert se[k] == pytest.approx(se_k, rel=1e-12)
        assert p[k] == pytest.approx(1 - tdist.cdf((abs(d.mean()) - 0.05) / se_k, 9), rel=1e-9)
    assert p[1] == 1.0 and p[2] == 0.0 and se[1] == 0.0
    # wider null, larger p; the sign of the change does not matter
    assert (interval.corrected_resampled_t(D, 700, 300, 0.1)[2] >= p).all()
    np.testing.assert_allclose(interval.corrected_resampled_t(-D, 700, 300, 0.05)[2], p)


def test_panel_delta_and_group_means():
    r2_run = np.array([[0.5, 0.2, -3.0, 0.4]] * 4)
    r2_panel = r2_run + np.array([0.1, -0.05, 0.0, 0.0])
    r2_panel[:, 2] = -9.0                              # undecodable in both: not counted
    fd, gd = interval.panel_null_deltas(r2_run, r2_panel, {"family": np.array(["a", "a", "b", "b"])},
                                        by=("family",))
    assert fd == pytest.approx(np.quantile([0.1, 0.05, 0.0], 0.95))
    assert gd == pytest.approx(np.quantile([0.025, 0.0], 0.95))
    # group means of the clipped R^2: -3 and -9 count as 0
    names, D = interval.group_deltas(r2_run, r2_panel, ["a", "a", "b", "b"])
    np.testing.assert_allclose(D[0], [0.025, 0.0])


def test_groups_are_tested_relative_to_the_common_shift():
    """A uniform change (a monotone map moves every feature about alike) is the common
    shift, not a group's finding: with centre 'median' Table 1 tests group-mean D_r minus
    the per-re-split median over decodable features (recomputed here by hand), with 'none'
    the group mean as it is (0.4.0); a group planted beyond the shift is still flagged; the
    panel's group delta is taken on the same centred group means."""
    from scipy.stats import t as tdist

    rng = np.random.default_rng(4)
    R, p = 10, 60
    r2_pre = rng.uniform(0.2, 0.8, size=(R, p))
    r2_ft = r2_pre - 0.04 + rng.normal(0, 0.004, size=(R, p))    # every feature loses 0.04
    r2_ft[:, :10] -= 0.15                                          # group "a" loses 0.15 more
    fam = np.array(["a"] * 10 + ["b"] * 25 + ["c"] * 25, dtype=object)
    meta = {"family": fam}
    t = interval.group_resplit_stats(r2_pre, r2_ft, r2_pre, r2_ft, meta, 700, 300, 0.01, "given",
                                     by=("family",))
    assert list(t.columns) == interval.STATS_RESPLIT_COLUMNS
    D = r2_ft - r2_pre
    shift = np.median(D, axis=1)                                   # all 60 decodable
    for g in ("a", "b", "c"):
        row = t[t.group == g].iloc[0]
        Dg = D[:, fam == g].mean(axis=1) - shift
        se = np.sqrt((1 / R + 300 / 700) * Dg.var(ddof=1))
        assert row.delta_r2_relative == pytest.approx(Dg.mean(), abs=1e-12)
        assert row.delta_r2_relative_se == pytest.approx(se, rel=1e-9)
        assert row.p_null == pytest.approx(tdist.sf((abs(Dg.mean()) - 0.01) / se, R - 1), rel=1e-9)
        assert row.delta_r2_clipped == pytest.approx(D[:, fam == g].mean(), abs=1e-12)
    assert t.common_shift.iloc[0] == pytest.approx(shift.mean(), abs=1e-12)
    assert (t.test == "nb_corrected_t_interval_relative").all()
    flagged = set(t.group[t.q_bh < 0.05])
    assert flagged == {"a"}                                        # b, c: only the shared loss
    t0 = interval.group_resplit_stats(r2_pre, r2_ft, r2_pre, r2_ft, meta, 700, 300, 0.01, "given",
                                      by=("family",), centre="none")
    assert set(t0.group[t0.q_bh < 0.05]) == {"a", "b", "c"}       # 0.4.0: the shift flags every group
    assert (t0.common_shift == 0).all() and (t0.test == "nb_corrected_t_interval").all()
    np.testing.assert_allclose(t0.delta_r2_relative, t0.delta_r2_clipped, atol=1e-12)
    # the panel's group delta: the 0.95 quantile of the centred |group mean|
    _, gd = interval.panel_null_deltas(r2_pre, r2_ft, meta, by=("family",))
    want = [abs((D[:, fam == g].mean(axis=1) - shift).mean()) for g in ("a", "b", "c")]
    assert gd == pytest.approx(np.quantile(want, 0.95), rel=1e-9)
    _, gd0 = interval.panel_null_deltas(r2_pre, r2_ft, meta, by=("family",), centre="none")
    assert gd0 == pytest.approx(np.quantile([abs(D[:, fam == g].mean()) for g in ("a", "b", "c")], 0.95), rel=1e-9)


def _table(r2_pre, r2_ft, centre=interval.CENTRE, null_delta=0.05):
    p = r2_pre.shape[1]
    meta = {"family": np.array(["f"] * p, dtype=object)}
    return interval.delta_resplit_table([f"c{k}" for k in range(p)], meta, r2_pre, r2_ft,
                                        np.ones_like(r2_pre), np.ones_like(r2_ft), 700, 300,
                                        null_delta, "default", centre=centre)


def test_common_shift_is_the_per_resplit_median_over_decodable_features():
    rng = np.random.default_rng(1)
    R, p = 8, 40
    r2_pre = rng.uniform(0.1, 0.8, size=(R, p))
    r2_pre[:, :5] = rng.uniform(-0.5, 0.02, size=(R, 5))      # undecodable in both: left out
    r2_ft = r2_pre + rng.normal(-0.03, 0.02, size=(R, p))
    r2_ft[:, :5] = rng.uniform(-0.5, 0.02, size=(R, 5))
    D = np.maximum(r2_ft, 0) - np.maximum(r2_pre, 0)
    shift = interval.common_shift(D, r2_pre, r2_ft)
    for r in range(R):                                          # a hand computation
        keep = [k for k in range(p) if max(np.maximum(r2_pre[:, k], 0).mean(),
                                           np.maximum(r2_ft[:, k], 0).mean()) > 0.05]
        assert shift[r] == pytest.approx(float(np.median([D[r, k] for k in keep])), abs=1e-15)
    df = _table(r2_pre, r2_ft)
    m, se, pv = interval.corrected_resampled_t(D - shift[:, None], 700, 300, 0.05)
    np.testing.assert_allclose(df.delta_r2_relative, m, atol=1e-15)
    np.testing.assert_allclose(df.delta_r2_relative_se, se, atol=1e-15)
    np.testing.assert_allclose(df.p_null, pv, atol=1e-15)
    assert df.common_shift.iloc[0] == pytest.approx(shift.mean())
    assert (df.test == "nb_corrected_t_interval_relative").all()
    # too few decodable features: no shift; centre none: 0.3.0's test exactly
    assert (interval.common_shift(D[:, :12], r2_pre[:, :12], r2_ft[:, :12]) == 0).all()
    none = _table(r2_pre, r2_ft, centre="none")
    assert (none.common_shift == 0).all() and (none.test == interval.TEST_NAME).all()
    np.testing.assert_allclose(none.p_null, interval.corrected_resampled_t(D, 700, 300, 0.05)[2])
    with pytest.raises(Exception, match="centre"):
        interval.common_shift(D, r2_pre, r2_ft, "mean")


def test_a_change_every_feature_shares_is_the_common_shift_not_a_finding():
    rng = np.random.default_rng(2)
    R, p = 10, 60
    r2_pre = rng.uniform(0.3, 0.7, size=(R, p))
    r2_ft = r2_pre + rng.normal(0.0, 0.01, size=(R, p))
    r2_ft[:, :6] -= 0.2                                          # six planted losses
    base = _table(r2_pre, r2_ft)
    shifted = _table(r2_pre, r2_ft - 0.1)                        # every feature 0.1 worse too
    assert shifted.common_shift.iloc[0] == pytest.approx(base.common_shift.iloc[0] - 0.1, abs=1e-12)
    np.testing.assert_allclose(shifted.p_null, base.p_null, atol=1e-12)
    assert (base.q_bh < 0.05).tolist() == [True] * 6 + [False] * (p - 6)
    # tested as they are, the shared loss flags every feature
    assert (_table(r2_pre, r2_ft - 0.1, centre="none").q_bh < 0.05).all()
    # the ranks do not depend on the centring (the shift is the same for every feature)
    assert base.rank_loss.tolist() == _table(r2_pre, r2_ft, centre="none").rank_loss.tolist()


def test_resplits_depend_on_case_ids_only_and_have_fixed_sizes():
    ids = [f"c{i:03d}" for i in range(50)]
    a_ids, a = resplit.make_resplits(ids, 5, seed=3)
    b_ids, b = resplit.make_resplits(ids[::-1], 5, seed=3)
    assert list(a_ids) == list(b_ids) and np.array_equal(a, b)
    assert (np.bincount(a[0], minlength=3) == [20, 15, 15]).all()
    assert not np.array_equal(a[0], a[1])
    assert not np.array_equal(a, resplit.make_resplits(ids, 5, seed=4)[1])


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_batched_gradients_equal_autograd(activation):
    import torch

    g = torch.Generator().manual_seed(0)
    G, n, d, h, p = 3, 7, 5, 4, 6
    X, R = torch.randn(G, n, d, generator=g), torch.randn(G, n, p, generator=g)
    W1, b1, W2, b2 = (torch.randn(*s, generator=g) for s in ((G, d, h), (G, h), (G, h, p), (G, p)))
    N = n * p
    got = resplit.resplit_gradients(torch, X, X.transpose(1, 2), R, W1.clone(), b1, W2.clone(), b2,
                                    0.01, 0.02, activation, N)
    ps = [t.clone().requires_grad_() for t in (W1, b1, W2, b2)]
    act = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}[activation]
    loss = 0
    for k in range(G):
        out = act(X[k] @ ps[0][k] + ps[1][k]) @ ps[2][k] + ps[3][k]
        loss = loss + (out - R[k]).abs().sum() / N + 0.01 * (ps[0][k].abs().sum() + ps[2][k].abs().sum()) \
            + 0.02 * (ps[0][k].square().sum() + ps[2][k].square().sum())
    loss.backward()
    for a, b in zip(got, ps):
        torch.testing.assert_close(a, b.grad, rtol=1e-5, atol=1e-6)


def test_batched_fits_equal_separate_fits_and_are_deterministic():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 20, 6)).astype(np.float32)
    R = rng.normal(size=(3, 20, 4)).astype(np.float32)
    W, b = resplit.train_shares(X, R, hidden=5, epochs=15, seed=2)
    W2, b2 = resplit.train_shares(X, R, hidden=5, epochs=15, seed=2)
    assert np.array_equal(W, W2) and np.array_equal(b, b2)
    for k in range(3):
        Wk, bk = resplit.train_shares(X[k:k + 1], R[k:k + 1], hidden=5, epochs=15, seed=2)
        np.testing.assert_allclose(W[k], Wk[0], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(b[k], bk[0], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- validity, small

@pytest.fixture(scope="module")
def cohort():
    from radlens_cli.lens.steps import decode, fit_share_tables

    coh = make_cohort(800, d=32, seed=11)
    emb, rad = tables(coh)
    share = fit_share_tables(emb, rad, **SMALL, device="cpu")
    pre = decode(share, emb, rad)
    return coh, share, pre, rad


def _delta(share, pre, ft, null_delta=interval.NULL_DELTA):
    n_s, n_d, n_t = pre.sizes
    df = interval.delta_resplit_table(share.columns, share.column_meta, pre.resplit["r2"],
                                      ft.resplit["r2"], pre.resplit["importance"],
                                      ft.resplit["importance"], n_s + n_d, n_t, null_delta,
                                      "default")
    groups = interval.group_resplit_stats(pre.resplit["r2"], ft.resplit["r2"], pre.resplit["mse"],
                                          ft.resplit["mse"], share.column_meta, n_s + n_d, n_t,
                                          null_delta, "default",
                                          by=("family", "image_type", "modality", "modality_family"))
    return df, groups


@pytest.mark.parametrize("null", ["second_run", "power", "redundant", "rotation", "shift"])
def test_nulls_flag_at_most_5_percent_and_one_group(cohort, null):
    from radlens_cli.lens.steps import decode

    coh, share, pre, rad = cohort
    ft = decode(share, tables(coh, null)[0], rad)
    df, groups = _delta(share, pre, ft)
    assert (df.q_bh < 0.05).mean() <= 0.05
    assert (groups.q_bh < 0.05).sum() <= 1
    if null in ("rotation", "shift"):           # exact maps: the reference's own pipeline
        assert ft.same_information == "exact-affine"
        assert (df.delta_r2_clipped == 0).all() and (df.p_null == 1).all()


def test_planted_changes_rank_first_both_ways(cohort):
    from radlens_cli.lens.steps import decode

    coh, share, pre, rad = cohort
    ft = decode(share, tables(coh, "planted")[0], rad)
    df, _ = _delta(share, pre, ft)
    truth = pd.Series(coh.truth["planted"], index=coh.columns)[df.column].to_numpy()
    gains = df.sort_values("rank_gain").index[:10]
    losses = df.sort_values("rank_loss").index[:10]
    # (0.9 both ways at n >= 1000 with the default h = 256: benchmarks/validity_reencode.py)
    assert (truth[gains] > 0).mean() >= 0.8
    assert (truth[losses] < 0).mean() >= 0.7
    flagged = df.q_bh < 0.05
    assert (truth[flagged] == 0).sum() <= max(1, 0.1 * flagged.sum())


# ---------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("symmetric")
    coh = make_cohort(240, d=16, seed=5, conditions=("second_run", "planted", "scale"))
    emb, rad = tables(coh)
    write_table(emb, str(d / "emb_pre.h5"))
    write_table(rad, str(d / "rad.h5"))
    for c in ("second_run", "planted", "scale"):
        write_table(tables(coh, c)[0], str(d / f"emb_{c}.h5"))
    _run("fit-share", d / "emb_pre.h5", d / "rad.h5", "-o", d / "share.h5", "--hidden", "16",
         "--epochs", "30", "--resplits", "4", "--device", "cpu")
    for c in ("pre", "second_run", "planted", "scale"):
        _run("decode", d / "share.h5", d / f"emb_{c}.h5", d / "rad.h5", "-o", d / f"dec_{c}.h5",
             "--device", "cpu")
    return d


def test_cli_default_pipeline_columns_and_null_panel(cli_run):
    d = cli_run
    _run("compare", d / "dec_pre.h5", d / "dec_planted.h5", d / "dec_scale.h5", "-o", d / "delta.csv",
         "--null-panel", d / "dec_second_run.h5")
    df = pd.read_csv(d / "delta.csv")
    assert list(df.columns) == interval.DELTA_RESPLIT_COLUMNS + ["null_panel_spearman"]
    assert df.null_delta.nunique() == 1 and df.null_delta_source.str.startswith("panel").all()
    assert (df.test == interval.test_name(interval.CENTRE)).all() and (df.n_resplits == 4).all()
    assert df.groupby("checkpoint").common_shift.nunique().eq(1).all()
    np.testing.assert_allclose(df.delta_r2_relative, df.delta_r2_clipped - df.common_shift, atol=1e-12)
    sc = df[df.checkpoint == "dec_scale"]
    assert (sc.delta_r2_clipped == 0).all() and (sc.p_null == 1).all()
    # the panel's delta is the 0.95 quantile of |delta| between the two runs, recomputed here
    with h5py.File(d / "dec_planted.h5") as a, h5py.File(d / "dec_second_run.h5") as b:
        ra, rb = a["resplit/r2"][()], b["resplit/r2"][()]
        assert a["resplit/squared_error"].shape[0] == 4
    D = np.maximum(rb, 0) - np.maximum(ra, 0)
    wide = (np.maximum(ra, 0).mean(axis=0) > 0.05) | (np.maximum(rb, 0).mean(axis=0) > 0.05)
    shift = np.median(D[:, wide], axis=1) if wide.sum() >= 10 else np.zeros(len(D))
    m = np.abs((D - shift[:, None]).mean(axis=0))              # centred, as features are tested
    dec = (np.maximum(ra, 0).mean(axis=0) > 0) | (np.maximum(rb, 0).mean(axis=0) > 0)
    assert df.null_delta.iloc[0] == pytest.approx(np.quantile(m[dec], 0.95), rel=1e-9)
    # stats: the same null for groups, named columns
    _run("stats", d / "dec_pre.h5", d / "dec_planted.h5", "-o", d / "table.csv", "--null-delta", "0.07")
    t = pd.read_csv(d / "table.csv")
    assert list(t.columns) == interval.STATS_RESPLIT_COLUMNS
    assert (t.null_delta == 0.07).all() and (t.null_delta_source == "given").all()
    assert (t.test == interval.test_name("median")).all() and t.common_shift.nunique() == 1
    np.testing.assert_allclose(t.delta_r2_relative, t.delta_r2_clipped - t.common_shift, atol=1e-12)
    # the groups' common shift is the features' (compare's), over all columns
    assert t.common_shift.iloc[0] == pytest.approx(df[df.checkpoint == "dec_planted"].common_shift.iloc[0], abs=1e-12)
    _run("stats", d / "dec_pre.h5", d / "dec_planted.h5", "-o", d / "table0.csv", "--null-delta", "0.07",
         "--centre", "none")
    t0 = pd.read_csv(d / "table0.csv")
    assert (t0.test == interval.test_name("none")).all() and (t0.common_shift == 0).all()
    np.testing.assert_allclose(t0.delta_r2_clipped, t.delta_r2_clipped, atol=1e-12)


def test_cli_same_seed_same_bytes_and_calibrated_02_reachable(cli_run, tmp_path):
    d = cli_run
    _run("fit-share", d / "emb_pre.h5", d / "rad.h5", "-o", tmp_path / "s2.h5", "--hidden", "16",
         "--epochs", "30", "--resplits", "4", "--device", "cpu")
    with h5py.File(d / "share.h5") as a, h5py.File(tmp_path / "s2.h5") as b:
        assert a.attrs["share_hash"] == b.attrs["share_hash"]
        assert np.array_equal(a["resplit/weight"][()], b["resplit/weight"][()])
        assert a.attrs["params"] == b.attrs["params"]
    _run("fit-share", d / "emb_pre.h5", d / "rad.h5", "-o", tmp_path / "old.h5", "--hidden", "16",
         "--epochs", "3", "--device", "cpu", "--method", "calibrated-0.2")
    with h5py.File(tmp_path / "old.h5") as f:
        assert f.attrs["method"] == "calibrated" and "resplit" not in f


def test_report_states_the_interval_null_and_the_panels_rank_agreement(cli_run, tmp_path):
    d = cli_run
    _run("compare", d / "dec_pre.h5", d / "dec_planted.h5", "-o", tmp_path / "delta.csv",
         "--null-panel", d / "dec_second_run.h5", "--top", "0")
    _run("stats", d / "dec_pre.h5", d / "dec_planted.h5", "-o", tmp_path / "table.csv",
         "--null-panel", d / "dec_second_run.h5")
    _run("report", "--radiomics", d / "rad.h5", "--compare", tmp_path / "delta.csv", "--stats",
         tmp_path / "table.csv", "-o", tmp_path / "r.html")
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    delta = pd.read_csv(tmp_path / "delta.csv")
    assert f"δ = {delta.null_delta.iloc[0]:.3g} (panel dec_second_run.h5 vs dec_planted.h5)" in html
    assert f"Spearman ρ = {delta.null_panel_spearman.iloc[0]:.2f}" in html
    assert "Nadeau–Bengio corrected resampled t" in html and "Wilcoxon p" not in html
    assert f"common shift {delta.common_shift.iloc[0]:+.3f} R²" in html
    # 0.3.0's test (--centre none): the report says what that flag means instead
    _run("compare", d / "dec_pre.h5", d / "dec_planted.h5", "-o", tmp_path / "delta0.csv",
         "--centre", "none", "--top", "0")
    _run("report", "--radiomics", d / "rad.h5", "--compare", tmp_path / "delta0.csv", "--stats",
         tmp_path / "table.csv", "-o", tmp_path / "r0.html")
    html0 = (tmp_path / "r0.html").read_text(encoding="utf-8")
    assert "common shift +" not in html0 and "common shift -" not in html0
    assert "a flag means |Δr²| &gt; δ = 0.05 (default)" in html0


def test_min_icc_on_the_symmetric_lens_recomputes_bh_and_ranks_over_stable_features(cli_run, tmp_path):
    from radlens_cli.lens.fdr import bh_fdr

    d = cli_run
    _run("compare", d / "dec_pre.h5", d / "dec_planted.h5", "-o", tmp_path / "all.csv", "--top", "0")
    full = pd.read_csv(tmp_path / "all.csv")
    icc = np.where(np.arange(len(full)) % 3 == 0, 0.4, 0.9)        # a third unstable
    pd.DataFrame({"column": full.column, "icc": icc, "ci_low": icc - 0.05, "ci_high": icc + 0.05,
                  "n_subjects": 20, "n_replicates": 5}).to_csv(tmp_path / "icc.csv", index=False)
    _run("compare", d / "dec_pre.h5", d / "dec_planted.h5", "-o", tmp_path / "stable.csv", "--top", "0",
         "--stability", tmp_path / "icc.csv", "--min-icc", "0.75")
    st = pd.read_csv(tmp_path / "stable.csv")
    kept = full[icc >= 0.75].reset_index(drop=True)
    assert list(st.column) == list(kept.column) and (st.icc >= 0.75).all()
    # the tested statistic and its p-value are the full comparison's; BH over the kept rows only
    np.testing.assert_allclose(st.delta_r2_relative, kept.delta_r2_relative)
    np.testing.assert_allclose(st.p_null, kept.p_null)
    np.testing.assert_allclose(st.q_bh, bh_fdr(kept.p_null.to_numpy()))
    dec = st.decodable.to_numpy(dtype=bool)
    order = st.delta_r2_clipped[dec].rank(ascending=False, method="first").astype(int)
    assert st.rank_gain[dec].tolist() == order.tolist()


def test_smooth_networks_carry_the_latents_more_equally_than_saturating_ones():
    """synth.reencode's two encoder kinds (docs/validity.md, the second generator): kernel
    ridge (sklearn, independent of the lens) recovers the encoded latents from the reference
    and from a second run's network; with "smooth" networks the two carry them more equally
    and better than with "saturating" ones, whose second run is the harsher null."""
    from sklearn.kernel_ridge import KernelRidge

    def carried(X, L, n):
        tr, te = slice(0, int(0.7 * n)), slice(int(0.7 * n), n)
        sd = X[tr].std(0)
        X = (X - X[tr].mean(0)) / np.where(sd > 0, sd, 1.0)
        P = KernelRidge(alpha=0.1, kernel="rbf", gamma=1.0 / X.shape[1]).fit(X[tr], L[tr]).predict(X[te])
        return 1 - ((L[te] - P) ** 2).sum(0) / ((L[te] - L[te].mean(0)) ** 2).sum(0)

    n, diff, low = 1200, {}, {}
    for enc in ("saturating", "smooth"):
        d_, l_ = [], []
        for seed in range(4):
            coh = make_cohort(n, seed=seed, conditions=("second_run",), encoder=enc)
            a, b = carried(coh.emb_pre, coh.latents, n), carried(coh.emb["second_run"], coh.latents, n)
            d_.append(np.abs(a - b).max())
            l_.append(min(a.min(), b.min()))
        diff[enc], low[enc] = np.mean(d_), np.mean(l_)
    assert diff["smooth"] < 0.7 * diff["saturating"]          # measured 0.07 against 0.13
    assert low["smooth"] > low["saturating"] + 0.05            # measured 0.82 against 0.68
    same = make_cohort(200, seed=3, conditions=("second_run",))
    explicit = make_cohort(200, seed=3, conditions=("second_run",), encoder="saturating")
    assert np.array_equal(same.emb["second_run"], explicit.emb["second_run"])
    with pytest.raises(ValueError, match="encoder must be one of saturating, smooth"):
        make_cohort(50, encoder="linear")
