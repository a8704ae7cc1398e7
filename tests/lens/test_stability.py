"""ICC(1,1) of lens/stability.py against pingouin's intraclass_corr and a planted design."""

import numpy as np
import pandas as pd
import pytest

from radlens_cli.errors import ParameterError
from radlens_cli.lens import stability as ls


def _pingouin_icc1(x, groups):
    """(ICC, CI low, CI high) of ICC(1,1) by pingouin, its CI unrounded."""
    import pingouin as pg  # the independent implementation (test extra)

    old = pg.options.get("round.column.CI95")
    pg.options["round.column.CI95"] = None
    try:
        reps = np.zeros(len(groups), dtype=int)
        for gname in np.unique(groups):
            idx = np.flatnonzero(groups == gname)
            reps[idx] = np.arange(len(idx))
        df = pd.DataFrame({"subject": groups, "replicate": reps, "value": x})
        res = pg.intraclass_corr(df, targets="subject", raters="replicate", ratings="value").set_index("Type")
    finally:
        pg.options["round.column.CI95"] = old
    row = res.loc["ICC(1,1)"]
    return float(row["ICC"]), float(row["CI95"][0]), float(row["CI95"][1])


def _design(n, k, between_sd, within_sd, p, seed):
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"s{i:03d}" for i in range(n)], k)
    subject = rng.normal(size=(n, p)) * between_sd
    x = np.repeat(subject, k, axis=0) + rng.normal(size=(n * k, p)) * within_sd + 5.0
    order = rng.permutation(n * k)  # rows in any order: grouping is by label, not position
    return x[order], groups[order]


@pytest.mark.parametrize("n,k,seed", [(12, 5, 0), (30, 2, 1), (8, 7, 2)])
def test_icc_equals_pingouin(n, k, seed):
    sds = np.array([0.1, 0.5, 1.0, 2.0, 5.0, 0.01])
    x, groups = _design(n, k, 1.0, 1.0, len(sds), seed)
    x = x * sds  # columns from very stable to very unstable
    x[:, 5] = x[:, 5] * 0 + np.random.default_rng(seed).normal(size=len(x))  # pure noise: ICC near 0 or < 0
    res = ls.icc1(x, groups)
    for j in range(x.shape[1]):
        icc, low, high = _pingouin_icc1(x[:, j], groups)
        assert abs(res["icc"][j] - icc) < 1e-9
        assert abs(res["ci_low"][j] - low) < 1e-6 and abs(res["ci_high"][j] - high) < 1e-6
    assert (res["n_subjects"] == n).all() and np.allclose(res["n_replicates"], k)


def test_icc_written_out_anova():
    """A 3-subject, 2-replicate example by hand: MSB, MSW and the ICC formula."""
    x = np.array([1.0, 3.0, 4.0, 6.0, 10.0, 10.0])
    groups = np.array(["a", "a", "b", "b", "c", "c"])
    # subject means 2, 5, 10; grand mean 17/3
    msb = 2 * ((2 - 17 / 3) ** 2 + (5 - 17 / 3) ** 2 + (10 - 17 / 3) ** 2) / 2
    msw = (1 + 1 + 1 + 1 + 0 + 0) / 3
    res = ls.icc1(x, groups)
    assert res["msb"][0] == pytest.approx(msb, abs=1e-12) and res["msw"][0] == pytest.approx(msw, abs=1e-12)
    assert res["icc"][0] == pytest.approx((msb - msw) / (msb + msw), abs=1e-12)


def test_planted_variance_ratio_within_interval():
    """Columns with between variance b and within variance w: ICC = b / (b + w) lies in the
    CI of one large cohort, and the 95 % interval covers it in about 95 % of 600 small ones."""
    rng = np.random.default_rng(7)
    ratios = np.array([0.05, 0.25, 0.5, 0.75, 0.9, 0.98])
    for n, k, reps in ((300, 5, 1), (30, 5, 600)):
        r = np.repeat(ratios, reps)
        groups = np.repeat(np.arange(n), k)
        subj = rng.normal(size=(n, len(r))) * np.sqrt(r)
        x = np.repeat(subj, k, axis=0) + rng.normal(size=(n * k, len(r))) * np.sqrt(1 - r)
        res = ls.icc1(x, groups)
        covered = ((res["ci_low"] <= r) & (r <= res["ci_high"])).reshape(len(ratios), reps)
        if reps == 1:
            assert covered.all(), (res["icc"], ratios)
            assert np.abs(res["icc"] - r).max() < 0.05
            assert (res["ci_high"] - res["ci_low"]).max() < 0.2  # informative at n=300, k=5
        else:
            coverage = covered.mean(axis=1)
            assert ((coverage > 0.92) & (coverage < 0.98)).all(), coverage
            bias = res["icc"].reshape(len(ratios), reps).mean(axis=1) - ratios
            assert np.abs(bias).max() < 0.03, bias


def test_constant_and_missing_columns():
    groups = np.repeat(["a", "b", "c", "d"], 3)
    x = np.stack([np.ones(12), np.repeat([1.0, 2.0, 3.0, 4.0], 3), np.arange(12.0)], axis=1)
    x[0, 2] = np.nan
    res = ls.icc1(x, groups)
    assert np.isnan(res["icc"][0])  # constant: ICC undefined
    assert res["icc"][1] == 1.0 and res["ci_low"][1] == 1.0 and res["ci_high"][1] == 1.0
    # the NaN is left out of that column only: subject a has 2 observations there, so k0 < 3
    assert res["n_replicates"][2] < 3 and res["n_replicates"][1] == 3
    keep = ~np.isnan(x[:, 2])
    alone = ls.icc1(x[keep, 2], groups[keep])
    assert res["icc"][2] == pytest.approx(alone["icc"][0], abs=1e-12)


def test_unbalanced_k0():
    """Unequal counts: k0 = (N - sum k_i^2 / N) / (n - 1), the one-way ANOVA estimator."""
    x = np.array([1.0, 2.0, 3.0, 5.0, 6.0, 9.0, 9.5])
    groups = np.array(["a", "a", "b", "b", "b", "c", "c"])
    res = ls.icc1(x, groups)
    k0 = (7 - (4 + 9 + 4) / 7) / 2
    assert res["n_replicates"][0] == pytest.approx(k0)
    means = {"a": 1.5, "b": 14 / 3, "c": 9.25}
    grand = x.mean()
    msb = sum(c * (means[g] - grand) ** 2 for g, c in (("a", 2), ("b", 3), ("c", 2))) / 2
    msw = sum((v - means[g]) ** 2 for v, g in zip(x, groups)) / 4
    assert res["icc"][0] == pytest.approx((msb - msw) / (msb + (k0 - 1) * msw), abs=1e-12)


def test_table_and_filter():
    x, groups = _design(10, 3, 1.0, 0.1, 2, 0)
    x[:, 1] = np.random.default_rng(1).normal(size=len(x))
    t = ls.icc_table(x, ["stable", "noise"], groups)
    assert list(t.columns) == list(ls.ICC_COLUMNS)
    assert t.n_replicates.dtype.kind == "i" and (t.n_replicates == 3).all()
    mask = ls.stable_columns(t, ["noise", "stable", "unknown"], 0.75)
    assert mask.tolist() == [False, True, False]
    with pytest.raises(ParameterError, match="min_icc"):
        ls.stable_columns(t, ["a"], 2.0)
    with pytest.raises(ParameterError) as e:
        ls.icc1(x, groups[:-1])
    assert "--group" in e.value.flagged()


def test_stable_delta_recomputes_bh_families_and_ranks():
    from radlens_cli.lens.fdr import bh_fdr

    rng = np.random.default_rng(0)
    cols = [f"t2/original_glcm_F{i}" for i in range(8)]
    rows = []
    for ck in ("a", "b"):
        d = rng.normal(size=8)
        rows.append(pd.DataFrame({"checkpoint": ck, "column": cols, "delta_r2": d, "decodable": True,
                                  "p_null": rng.uniform(0, 0.1, 8), "p_perm": rng.uniform(0, 0.1, 8),
                                  "rank_gain": 0, "rank_loss": 0}))
    delta = pd.concat(rows, ignore_index=True)
    delta["q_bh"], delta["q_perm"] = 0.0, 0.0
    icc = pd.DataFrame({"column": cols[:-1], "icc": [0.9, 0.2, 0.8, 0.76, 0.1, 0.95, 0.5]})  # F7: no ICC
    full, n0 = ls.stable_delta(delta, icc)
    assert n0 == 0 and len(full) == 16 and np.isnan(full["icc"].iloc[7]) and full["icc"].iloc[1] == 0.2
    out, n_out = ls.stable_delta(delta, icc, 0.75)
    kept = ["t2/original_glcm_F0", "t2/original_glcm_F2", "t2/original_glcm_F3", "t2/original_glcm_F5"]
    assert n_out == 8 and out["column"].tolist() == kept * 2
    for ck in ("a", "b"):
        blk = out[out.checkpoint == ck]
        assert np.allclose(blk["q_bh"], bh_fdr(blk["p_null"].to_numpy()))
        assert np.allclose(blk["q_perm"], bh_fdr(blk["p_perm"].to_numpy()))
        assert sorted(blk["rank_gain"].tolist()) == [1, 2, 3, 4]
        assert blk.loc[blk["delta_r2"].idxmax(), "rank_gain"] == 1
        assert blk.loc[blk["delta_r2"].idxmin(), "rank_loss"] == 1
        # the family is smaller: each q is at most the q over all 8 rows
        allq = bh_fdr(delta[delta.checkpoint == ck]["p_null"].to_numpy())[[0, 2, 3, 5]]
        assert (blk["q_bh"].to_numpy() <= allq + 1e-15).all()


def test_stable_delta_refuses_to_leave_nothing():
    delta = pd.DataFrame({"checkpoint": "a", "column": ["x", "y"], "delta_r2": [0.1, -0.1]})
    with pytest.raises(ParameterError, match="no feature of the table has an ICC that high"):
        ls.stable_delta(delta, {"x": 0.2, "other": 0.9}, 0.75)
