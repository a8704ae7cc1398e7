"""compare's refits, permutation test and views; stats' groups, Wilcoxon and BH-FDR."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats as ss

from radlens_cli.lens import bh_fdr, fit_decoder, group_table, importance, r2_score
from radlens_cli.lens.compare import (PairedData, bootstrap_ci, delta_table, permutation_test,
                                      solve_moments, three_views)


def _paired(n=80, n_ev=30, h=6, p=5, seed=0, intercept=False):
    rng = np.random.default_rng(seed)
    Zp, Zf = rng.normal(size=(n, h)), rng.normal(size=(n, h))
    Zpe, Zfe = rng.normal(size=(n_ev, h)), rng.normal(size=(n_ev, h))
    th = rng.normal(size=(p, h))
    R = Zp @ th.T + rng.normal(size=(n, p))
    Re = Zpe @ th.T + rng.normal(size=(n_ev, p))
    return PairedData(Zp, Zf, R, Zpe, Zfe, Re, intercept=intercept, ridge_pre=0.0, ridge_ft=0.0)


@pytest.mark.parametrize("intercept,ridge", [(False, 0.0), (True, 0.0), (True, 2.0)])
def test_solve_moments_equals_direct_fit(intercept, ridge):
    d = _paired()
    Z, R = d.Zp_tr, d.R_tr
    th, b = solve_moments(Z.T @ Z, Z.T @ R, len(Z), Z.sum(0), R.sum(0), intercept, ridge)
    dec = fit_decoder(Z, R, ridge=ridge, intercept=intercept)
    np.testing.assert_allclose(th, dec.theta, atol=1e-9)
    np.testing.assert_allclose(b, dec.bias, atol=1e-9)


@pytest.mark.parametrize("rank_by,intercept", [("delta_importance", False), ("delta_r2", True)])
def test_permutation_test_equals_direct_refits(rank_by, intercept):
    d = _paired(intercept=intercept)
    n_perm = 6
    p, obs = permutation_test(d, n_perm, seed=7, rank_by=rank_by)

    def stat(Zp, Zf, Zpe, Zfe):
        a = fit_decoder(Zp, d.R_tr, intercept=intercept)
        b = fit_decoder(Zf, d.R_tr, intercept=intercept)
        if rank_by == "delta_importance":
            return importance(b.theta) - importance(a.theta)
        return r2_score(b.predict(Zfe), d.R_ev) - r2_score(a.predict(Zpe), d.R_ev)

    ref_obs = stat(d.Zp_tr, d.Zf_tr, d.Zp_ev, d.Zf_ev)
    np.testing.assert_allclose(obs, ref_obs, atol=1e-9)
    rng = np.random.default_rng(7)
    count = np.zeros_like(obs)
    for _ in range(n_perm):
        s = (rng.random(len(d.R_tr)) < 0.5)[:, None]
        Zp, Zf = np.where(s, d.Zf_tr, d.Zp_tr), np.where(s, d.Zp_tr, d.Zf_tr)
        Zpe, Zfe = d.Zp_ev, d.Zf_ev
        if rank_by == "delta_r2":
            se = (rng.random(len(d.R_ev)) < 0.5)[:, None]
            Zpe, Zfe = np.where(se, d.Zf_ev, d.Zp_ev), np.where(se, d.Zp_ev, d.Zf_ev)
        count += np.abs(stat(Zp, Zf, Zpe, Zfe)) >= np.abs(ref_obs)
    np.testing.assert_allclose(p, (1 + count) / (1 + n_perm))


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    d = _paired(n=200)
    lo, hi = bootstrap_ci(d, 40, seed=1)
    lo2, hi2 = bootstrap_ci(d, 40, seed=1)
    np.testing.assert_array_equal(lo, lo2)
    obs = importance(fit_decoder(d.Zf_tr, d.R_tr).theta) - importance(fit_decoder(d.Zp_tr, d.R_tr).theta)
    assert (lo < hi).all() and ((lo <= obs) & (obs <= hi)).mean() >= 0.8
    lo3, hi3 = bootstrap_ci(d, 10, seed=1, rank_by="delta_r2")
    assert (lo3 <= hi3).all()


def test_delta_table_ranks_and_views():
    rng = np.random.default_rng(0)
    tp, tf = rng.normal(size=(20, 4)), rng.normal(size=(20, 4))
    cols = [f"t2/original_glcm_F{k}" for k in range(20)]
    meta = {"modality": ["t2"] * 20, "image_type": ["original"] * 20, "family": ["glcm"] * 20,
            "feature": [f"F{k}" for k in range(20)]}
    r2p, r2f = rng.uniform(size=20), rng.uniform(size=20)
    df = delta_table(cols, meta, tp, tf, r2p, r2f, rank_by="delta_importance")
    np.testing.assert_allclose(df.delta_importance, np.linalg.norm(tf, axis=1) - np.linalg.norm(tp, axis=1))
    np.testing.assert_allclose(df.delta_r2, r2f - r2p)
    assert df.loc[df.delta_importance.idxmax(), "rank_gain"] == 1
    assert df.loc[df.delta_importance.idxmin(), "rank_loss"] == 1
    assert sorted(df.rank_gain) == list(range(1, 21))
    assert df.decodable.all() and (df.checkpoint == "ft").all()
    v = list(three_views(df, 3, 0.5, rank_by="delta_importance").values())
    assert list(v[0].column) == list(df.sort_values("delta_importance", ascending=False).column[:3])
    stable = v[2]
    qp, qf = np.quantile(df.importance_pre, 0.5), np.quantile(df.importance_ft, 0.5)
    both = df[(df.importance_pre >= qp) & (df.importance_ft >= qf)]
    expect = both.assign(a=both.delta_importance.abs()).sort_values("a").column[:3]
    assert list(stable.column) == list(expect)


def test_undecodable_features_are_not_ranked_and_views_keep_signs():
    rng = np.random.default_rng(3)
    cols = [f"t2/original_glcm_F{k}" for k in range(10)]
    meta = {"modality": ["t2"] * 10, "image_type": ["original"] * 10, "family": ["glcm"] * 10,
            "feature": [f"F{k}" for k in range(10)]}
    r2p = np.array([0.5, 0.6, 0.7, -0.2, -3.0, -1.0, 0.0, 0.3, 0.2, -0.5])
    r2f = np.array([0.6, 0.4, 0.7, -0.1, -0.5, -5.0, 0.0, 0.35, -0.1, 0.1])
    df = delta_table(cols, meta, rng.normal(size=(10, 3)), rng.normal(size=(10, 3)), r2p, r2f)
    assert list(df.decodable) == [True, True, True, False, False, False, False, True, True, True]
    assert df.rank_gain[~df.decodable].isna().all() and df.rank_loss[~df.decodable].isna().all()
    assert sorted(df.rank_gain.dropna()) == list(range(1, 7))
    # -0.5 -> 0.1 is the largest decodable gain; -3.0 -> -0.5 (+2.5) is not decodable
    assert df.loc[df.rank_gain == 1, "column"].item() == cols[9]
    v = list(three_views(df, 5, 0.5).values())
    assert (v[0].delta_r2 > 0).all() and (v[1].delta_r2 < 0).all()
    assert not set(v[0].column) & set(np.array(cols)[~df.decodable.to_numpy()])


def test_paired_test_is_a_t_test_and_exact_nulls_get_one():
    from radlens_cli.lens.compare import paired_test

    rng = np.random.default_rng(4)
    a = rng.exponential(size=(50, 4))
    b = a.copy()
    b[:, 1] *= 1.5
    b[:, 2] += rng.normal(scale=0.1, size=50)
    b[:, 3] = (a[:, 3].astype(np.float32) * np.float32(1 + 1e-7)).astype(np.float64)  # rounding
    p = paired_test(a, b)
    assert p[0] == 1.0 and p[3] == 1.0
    for k in (1, 2):
        assert p[k] == pytest.approx(ss.ttest_rel(b[:, k], a[:, k]).pvalue, rel=1e-10)


def test_permutation_resolution_warning():
    from radlens_cli.lens.compare import permutation_resolution

    msg = permutation_resolution(200, 2511)
    assert "needs at least 250 features" in msg and "50219 permutations" in msg
    assert permutation_resolution(2000, 90) is None
    assert permutation_resolution(1000, 90) is not None and "1799" in permutation_resolution(1000, 90)


def test_bh_equals_scipy():
    p = np.random.default_rng(0).uniform(size=50) ** 3
    np.testing.assert_allclose(bh_fdr(p), ss.false_discovery_control(p, method="bh"), rtol=1e-12)


def test_group_stats_equal_direct_computation():
    rng = np.random.default_rng(1)
    n, fams = 40, ["glcm", "glcm", "gldm", "ngtdm", "ngtdm", "ngtdm"]
    meta = {"modality": np.array(["t2", "adc"] * 3, dtype=object), "family": np.array(fams, dtype=object),
            "image_type": np.array(["original", "wavelet-LLH", "wavelet-HHH", "original", "original",
                                    "wavelet-LLL"], dtype=object),
            "feature": np.array(list("abcdef"), dtype=object)}
    sp, sf = rng.exponential(size=(n, 6)), rng.exponential(size=(n, 6)) * 1.3
    r2p, r2f = rng.uniform(size=6), rng.uniform(size=6)
    df = group_table(sp, sf, r2p, r2f, meta)
    row = df[(df.group_by == "family") & (df.group == "ngtdm")].iloc[0]
    k = [3, 4, 5]
    assert row.n_features == 3
    assert row.mse_pre == pytest.approx(sp[:, k].mean()) and row.r2_ft == pytest.approx(r2f[k].mean())
    assert row.wilcoxon_p == ss.wilcoxon(sp[:, k].mean(1), sf[:, k].mean(1)).pvalue
    wav = df[(df.group_by == "image_type") & (df.group == "wavelet")].iloc[0]
    assert wav.n_features == 3
    assert wav.wilcoxon_p == ss.wilcoxon(sp[:, [1, 2, 5]].mean(1), sf[:, [1, 2, 5]].mean(1)).pvalue
    mf = df[df.group_by == "modality_family"]
    assert set(mf.group) == {"t2/glcm", "adc/glcm", "t2/gldm", "t2/ngtdm", "adc/ngtdm"}
    np.testing.assert_allclose(df.q_bh, ss.false_discovery_control(df.wilcoxon_p, method="bh"))
    assert list(df.columns) == ["checkpoint", "group_by", "group", "n_features", "mse_pre", "r2_pre",
                                "mse_ft", "r2_ft", "wilcoxon_p", "stars", "q_bh"]
    exp = np.where(df.q_bh < 0.001, "***", np.where(df.q_bh < 0.01, "**",
                   np.where(df.q_bh < 0.05, "*", "")))
    assert list(df.stars) == list(exp)


def test_shared_eval_r2_is_the_stored_r2_or_recomputed_on_the_shared_cases():
    from types import SimpleNamespace

    from radlens_cli.lens.compare import shared_eval_r2

    rng = np.random.default_rng(5)
    tgt = rng.normal(size=(8, 2))
    pred_p, pred_f = tgt + 0.3 * rng.normal(size=(8, 2)), tgt + 0.6 * rng.normal(size=(8, 2))
    pre = SimpleNamespace(eval_case_id=np.arange(8), r2=np.array([0.1, 0.2]))
    ft = SimpleNamespace(eval_case_id=np.arange(8), r2=np.array([0.3, 0.4]))
    bp = {"eval/prediction": pred_p, "eval/target": tgt}
    bf = {"eval/prediction": pred_f, "eval/target": tgt}
    full = np.arange(8)
    a, b = shared_eval_r2(pre, ft, full, full, bp, bf)
    assert a is pre.r2 and b is ft.r2  # the same cases: what decode stored
    ft.eval_case_id = np.arange(10)    # ft used two more cases: recompute on the 6 shared rows
    rows_p, rows_f = np.array([0, 1, 2, 3, 5, 7]), np.array([1, 0, 2, 3, 5, 7])
    a, b = shared_eval_r2(pre, ft, rows_p, rows_f, bp, bf)

    def r2(p, t):  # 1 - RSS/TSS per column, written out
        return np.array([1 - ((t[:, j] - p[:, j]) ** 2).sum() / ((t[:, j] - t[:, j].mean()) ** 2).sum()
                         for j in range(t.shape[1])])

    np.testing.assert_allclose(a, r2(pred_p[rows_p], tgt[rows_p]), rtol=1e-12)
    np.testing.assert_allclose(b, r2(pred_f[rows_f], tgt[rows_f]), rtol=1e-12)
