"""CKA against direct formulas with centring matrices and known invariances."""

import numpy as np
import pytest

from radlens_cli.lens import cka as lk


def _hsic_biased(k, l):
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def _hsic_song(k, l):
    """Unbiased HSIC, Song et al. 2012, eq. (5), written out."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ k @ l @ one)) / (n * (n - 3))


def _cka_direct(k, l, hsic):
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


@pytest.fixture
def xy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) + 3.0  # not centred on purpose
    y = np.tanh(x @ rng.normal(size=(6, 9))) + 0.5 * rng.normal(size=(50, 9))
    return x, y


@pytest.mark.parametrize("debiased", [False, True])
def test_self_rotation_and_scaling_give_one(xy, debiased):
    x, _ = xy
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))
    assert lk.cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    assert lk.cka(x, 3.7 * x @ q + 11.0, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


def test_linear_equals_direct_formula(xy):
    x, y = xy
    xc, yc = x - x.mean(0), y - y.mean(0)
    direct = _cka_direct(x @ x.T, y @ y.T, _hsic_biased)
    assert lk.cka(x, y) == pytest.approx(direct, rel=1e-12)
    # the feature-space shortcut ||X'Y||^2 / (||X'X|| ||Y'Y||)
    short = np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert lk.cka(x, y) == pytest.approx(short, rel=1e-12)


def test_debiased_linear_equals_song_formula(xy):
    x, y = xy
    xc, yc = x - x.mean(0), y - y.mean(0)
    direct = _cka_direct(xc @ xc.T, yc @ yc.T, _hsic_song)
    assert lk.cka(x, y, debiased=True) == pytest.approx(direct, rel=1e-10)
    # the gram (U-centring) route agrees with the feature-space route
    assert lk.cka_from_grams(x @ x.T, y @ y.T, True) == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize("debiased,hsic", [(False, _hsic_biased), (True, _hsic_song)])
def test_rbf_equals_direct_formula(xy, debiased, hsic):
    x, y = xy
    sigma = 0.8

    def k(a):
        d2 = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
        return np.exp(-d2 / (2 * sigma**2 * np.median(d2)))

    assert lk.cka(x, y, "rbf", debiased, sigma) == pytest.approx(_cka_direct(k(x), k(y), hsic), rel=1e-10)


def test_debiased_near_zero_for_independent_tables():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(500, 64)), rng.normal(size=(500, 64))
    deb = lk.cka(x, y, debiased=True)
    assert abs(deb) < 0.05
    assert lk.cka(x, y) > abs(deb)  # the biased estimator is pulled up at small n / large p


@pytest.mark.parametrize("debiased", [False, True])
def test_bootstrap_is_seeded_and_brackets_the_estimate(xy, debiased):
    x, y = xy
    a = lk.bootstrap_cka(x, y, 60, seed=5, debiased=debiased)
    b = lk.bootstrap_cka(x, y, 60, seed=5, debiased=debiased)
    assert a[0] == b[0] and a[1] == b[1]
    assert a[0] < a[1]
    if debiased:  # the biased estimator's replicates sit above it at small n (documented)
        assert a[0] <= lk.cka(x, y, debiased=True) <= a[1]
    # feature-space bootstrap (large n path) gives the same replicates as the gram path
    old = lk.GRAM_BOOTSTRAP_MAX
    try:
        lk.GRAM_BOOTSTRAP_MAX = 0
        c = lk.bootstrap_cka(x, y, 60, seed=5, debiased=debiased)
    finally:
        lk.GRAM_BOOTSTRAP_MAX = old
    np.testing.assert_allclose(a[2], c[2], rtol=1e-9)


def test_debiased_bootstrap_replicates_centre_on_the_estimate():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(80, 10))
    y = x[:, :4] @ rng.normal(size=(4, 12)) + 2.0 * rng.normal(size=(80, 12))
    est = lk.cka(x, y, "rbf", debiased=True)
    _, _, reps = lk.bootstrap_cka(x, y, 200, seed=0, kernel="rbf", debiased=True)
    assert abs(np.median(reps) - est) < 0.25 * reps.std() + 0.01


def test_no_variance_is_an_error():
    with pytest.raises(lk.RadlensError, match="no variance"):
        lk.cka(np.ones((10, 3)), np.random.default_rng(0).normal(size=(10, 2)))
