"""Correlation maps against scipy, column by column (an independent computation)."""

import warnings

import numpy as np

from radlens_cli.names import META_KEYS, parse_column_names, table_column_meta
import pandas as pd
import pytest
from scipy import stats

from radlens_cli.lens import correlate as lc


def _tied(rng, n, p, levels):
    return rng.integers(0, levels, size=(n, p)).astype(float)


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = _tied(rng, 37, 4, 5)
    y = np.column_stack([_tied(rng, 37, 2, 4), rng.normal(size=(37, 2)), x[:, 0] + _tied(rng, 37, 1, 3)[:, 0]])
    res = lc.correlate(x, y, "spearman")
    assert res.rho.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            ref = stats.spearmanr(x[:, i], y[:, j])
            assert res.rho[i, j] == pytest.approx(ref.statistic, abs=1e-12)
            assert res.p[i, j] == pytest.approx(ref.pvalue, rel=1e-10, abs=1e-300)


def test_pearson_equals_scipy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(25, 3))
    y = np.column_stack([x[:, 1] * 0.9 + rng.normal(size=25) * 0.1, rng.normal(size=(25, 2))])
    res = lc.correlate(x, y, "pearson")
    for i in range(3):
        for j in range(3):
            ref = stats.pearsonr(x[:, i], y[:, j])
            assert res.rho[i, j] == pytest.approx(ref.statistic, abs=1e-12)
            assert res.p[i, j] == pytest.approx(ref.pvalue, rel=1e-8)


def test_q_is_bh_over_all_pairs():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 6))
    y = x @ rng.normal(size=(6, 7)) * 0.3 + rng.normal(size=(30, 7))
    res = lc.correlate(x, y)
    ref = stats.false_discovery_control(res.p.ravel(), method="bh").reshape(res.p.shape)
    np.testing.assert_allclose(res.q, ref, rtol=1e-12, atol=0)


def test_constant_and_nonfinite_columns_excluded_never_nan():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(20, 4))
    x[:, 1] = 7.0
    y = rng.normal(size=(20, 5))
    y[:, 0] = 0.0
    y[3, 4] = np.nan
    res = lc.correlate(x, y)
    assert list(res.reason_x) == ["", lc.CONSTANT, "", ""]
    assert list(res.reason_y) == [lc.CONSTANT, "", "", "", lc.NON_FINITE]
    assert res.rho.shape == (3, 3)
    for m in (res.rho, res.p, res.q):
        assert np.isfinite(m).all()
    ref = stats.spearmanr(x[:, 2], y[:, 3])
    assert res.rho[1, 2] == pytest.approx(ref.statistic, abs=1e-12)


def test_perfect_correlation_gives_p_zero_without_warnings():
    x = np.arange(10.0)[:, None]
    y = np.column_stack([x[:, 0] ** 3, -x[:, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = lc.correlate(x, y)
    np.testing.assert_array_equal(res.rho, [[1.0, -1.0]])
    np.testing.assert_array_equal(res.p, [[0.0, 0.0]])


def test_chunking_does_not_change_results():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(15, 3)), rng.normal(size=(15, 11))
    np.testing.assert_allclose(lc.correlation_matrix(x, y, chunk=2), lc.correlation_matrix(x, y, chunk=1024),
                               rtol=0, atol=1e-14)


def test_too_few_cases_is_an_error():
    with pytest.raises(lc.RadlensError, match="at least 3"):
        lc.correlate(np.ones((2, 2)) * [[1], [2]], np.ones((2, 1)) * [[1], [3]])


def test_table_meta_preferred_over_parsing():
    given = {k: np.array(["x", "y"], dtype=object) for k in META_KEYS}
    meta = table_column_meta(["t2/original_glcm_A", "t2/original_glcm_B"], given)
    assert list(meta["family"]) == ["x", "y"]


def _random_result(seed=8, d=5, r=6):
    rng = np.random.default_rng(seed)
    rho = rng.uniform(-1, 1, size=(d, r))
    p = rng.uniform(0, 0.1, size=(d, r))
    q = rng.uniform(0, 0.1, size=(d, r))
    cols = [f"{m}/original_{f}_F{k}" for m, f, k in
            [("t2", "glcm", 0), ("t2", "glcm", 1), ("t2", "firstorder", 0), ("adc", "glcm", 0),
             ("adc", "firstorder", 0), ("adc", "firstorder", 1)]][:r]
    return rho, p, q, [f"e{i}" for i in range(d)], cols, parse_column_names(cols)


def test_pairs_table_matches_a_loop():
    rho, p, q, deep, cols, meta = _random_result()
    df = lc.pairs_table(rho, p, q, deep, cols, meta, 0.5, 0.05)
    assert list(df.columns) == ["deep_feature", "column", "modality", "image_type", "family", "feature",
                                "rho", "p", "q"]
    expect = {(deep[i], cols[j]) for i in range(len(deep)) for j in range(len(cols))
              if abs(rho[i, j]) >= 0.5 and q[i, j] < 0.05}
    assert set(zip(df.deep_feature, df.column)) == expect
    assert (np.diff(np.abs(df.rho.to_numpy())) <= 0).all()
    row = df.iloc[0]
    i, j = deep.index(row.deep_feature), cols.index(row.column)
    assert (row.rho, row.p, row.q) == (rho[i, j], p[i, j], q[i, j])


def test_explanation_table_matches_a_loop():
    rho, p, q, deep, cols, meta = _random_result(seed=9)
    df = lc.explanation_table(rho, q, deep, cols, meta, 0.4, 0.05, top=2)
    assert list(df.deep_feature) == deep
    for i, row in df.iterrows():
        sig = [j for j in range(len(cols)) if abs(rho[i, j]) >= 0.4 and q[i, j] < 0.05]
        assert row.n_correlated == len(sig)
        if sig:
            best = max(sig, key=lambda j: abs(rho[i, j]))
            assert row.top_column == cols[best] and row.top_rho == rho[i, best]
            assert len(row.top_columns.split(";")) == min(2, len(sig))


def test_summary_table_matches_a_loop():
    rng = np.random.default_rng(10)
    _, _, _, _, cols, meta = _random_result()
    pre = rng.uniform(size=(4, 6)) > 0.7
    ft = rng.uniform(size=(5, 6)) > 0.5
    df = lc.summary_table(pre, ft, meta).set_index(["modality", "family"])
    for (m, f), row in df.iterrows():
        g = [j for j in range(6) if m in ("all", meta["modality"][j]) and f in ("all", meta["family"][j])]
        assert row.n_columns == len(g)
        assert row.deep_pre == sum(pre[i, g].any() for i in range(4))
        assert row.deep_ft == sum(ft[i, g].any() for i in range(5))
        assert row.pairs_ft == ft[:, g].sum() and row.delta_pairs == ft[:, g].sum() - pre[:, g].sum()
    assert df.loc[("all", "all"), "frac_ft"] == pytest.approx(ft.any(axis=1).sum() / 5)
    assert isinstance(df, pd.DataFrame)
