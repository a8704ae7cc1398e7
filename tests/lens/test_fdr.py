import numpy as np
from scipy.stats import false_discovery_control

from radlens_cli.lens.fdr import bh_fdr, stars


def test_bh_equals_scipy():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(size=500), rng.uniform(0, 1e-3, size=50), [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(bh_fdr(p), false_discovery_control(p, method="bh"), rtol=1e-12)


def test_bh_ignores_nan_and_keeps_shape():
    p = np.array([[0.01, np.nan], [0.04, 0.03]])
    q = bh_fdr(p)
    assert np.isnan(q[0, 1])
    np.testing.assert_allclose(q[np.isfinite(q)], false_discovery_control([0.01, 0.04, 0.03]))


def test_stars():
    assert list(stars([0.2, 0.04, 0.009, 0.0009, np.nan])) == ["", "*", "**", "***", ""]
