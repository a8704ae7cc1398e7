"""Closed-form decoder, importance and R^2 against direct numpy/scikit-learn computations."""

import numpy as np
import pytest

from radlens_cli.lens import fit_decoder, importance, r2_score
from radlens_cli.lens.scaling import Scaler
from radlens_cli.lens.share import ShareModel


def _share(d=12, h=8, seed=0):
    rng = np.random.default_rng(seed)
    cols = [f"c{k}" for k in range(5)]
    sc = Scaler("minmax", cols, np.zeros(5), np.ones(5))
    return ShareModel(weight=rng.normal(size=(d, h)).astype(np.float32),
                      bias=rng.normal(size=h).astype(np.float32), activation="tanh",
                      embedding_columns=[f"e{j}" for j in range(d)], scaler=sc)


@pytest.mark.parametrize("intercept", [True, False])
def test_recovers_known_theta_exactly(intercept):
    rng = np.random.default_rng(1)
    share = _share()
    Z = share.transform(rng.normal(size=(200, 12)))
    theta = rng.normal(size=(5, 8))
    bias = rng.normal(size=5) if intercept else np.zeros(5)
    R = Z @ theta.T + bias                       # R = theta [Z; 1] (or theta Z)
    dec = fit_decoder(Z, R, intercept=intercept)
    np.testing.assert_allclose(dec.theta, theta, atol=1e-8, rtol=0)
    np.testing.assert_allclose(dec.bias, bias, atol=1e-8, rtol=0)
    assert not dec.warnings


def test_matches_paper_formula_and_ridge_normal_equations():
    rng = np.random.default_rng(2)
    Z, R = rng.normal(size=(60, 6)), rng.normal(size=(60, 4))
    # the paper: theta = R Z^T (Z Z^T)^-1 with R (p x n), Z (h x n)
    paper = R.T @ Z.T.T @ np.linalg.inv(Z.T @ Z)
    np.testing.assert_allclose(fit_decoder(Z, R).theta, paper, atol=1e-10)
    a = 3.0
    ridge = np.linalg.solve(Z.T @ Z + a * np.eye(6), Z.T @ R).T
    np.testing.assert_allclose(fit_decoder(Z, R, ridge=a).theta, ridge, atol=1e-10)
    # intercept with ridge: the bias is not penalised (centred ridge)
    Zc, Rc = Z - Z.mean(0), R - R.mean(0)
    th = np.linalg.solve(Zc.T @ Zc + a * np.eye(6), Zc.T @ Rc).T
    dec = fit_decoder(Z, R, ridge=a, intercept=True)
    np.testing.assert_allclose(dec.theta, th, atol=1e-10)
    np.testing.assert_allclose(dec.bias, R.mean(0) - th @ Z.mean(0), atol=1e-10)


def test_importance_and_delta_equal_numpy():
    rng = np.random.default_rng(3)
    tp, tf = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    ip = np.array([np.sqrt(sum(x * x for x in row)) for row in tp])
    np.testing.assert_allclose(importance(tp), ip, rtol=1e-12)
    np.testing.assert_allclose(importance(tf) - importance(tp), np.linalg.norm(tf, axis=1) - ip, rtol=1e-12)


def test_r2_equals_sklearn():
    from sklearn.metrics import r2_score as sk

    rng = np.random.default_rng(4)
    y, p = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    y[:, 3] = 1.0                                  # constant target: sklearn's force_finite
    np.testing.assert_allclose(r2_score(p, y), sk(y, p, multioutput="raw_values"), rtol=1e-12)


def test_under_determined_falls_back_to_ridge_with_warning():
    rng = np.random.default_rng(5)
    Z, R = rng.normal(size=(10, 16)), rng.normal(size=(10, 3))
    dec = fit_decoder(Z, R)
    assert dec.ridge > 0 and np.isfinite(dec.theta).all()
    assert any("falling back to ridge" in w for w in dec.warnings)
    assert any("n_train=10 < 5*h" in w for w in dec.warnings)
    np.testing.assert_allclose(dec.theta, np.linalg.solve(Z.T @ Z + dec.ridge * np.eye(16), Z.T @ R).T,
                               atol=1e-8)


def test_conditioning_diagnostics():
    rng = np.random.default_rng(6)
    Z = rng.normal(size=(100, 5))
    Z[:, 4] = Z[:, 3] + 1e-4 * rng.normal(size=100)          # nearly collinear
    dec = fit_decoder(Z, rng.normal(size=(100, 2)))
    s = np.linalg.svd(Z, compute_uv=False)
    assert dec.diagnostics["condition_number"] == pytest.approx(s[0] / s[-1], rel=1e-6)
    assert dec.diagnostics["n_train"] == 100 and dec.diagnostics["hidden"] == 5
    assert dec.diagnostics["effective_rank"] == 5 and not dec.warnings
    Z[:, 4] = Z[:, 3]                                           # exactly collinear
    dec = fit_decoder(Z, rng.normal(size=(100, 2)))
    assert dec.diagnostics["effective_rank"] == 4
    assert any("ill-conditioned" in w for w in dec.warnings)
    assert np.isfinite(dec.theta).all()
    # minimum-norm solution: the two copies share the weight equally
    np.testing.assert_allclose(dec.theta[:, 3], dec.theta[:, 4], atol=1e-6)


def test_lens_imports_without_cli_or_torch():
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys; from radlens_cli.lens import decode, fit_share_tables, delta_table, "
            "group_stats; assert 'typer' not in sys.modules and 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert r.returncode == 0, r.stderr


def test_choose_ridge_equals_brute_force_gcv():
    from radlens_cli.lens.decoder import RIDGE_GRID, choose_ridge, fit_decoder

    rng = np.random.default_rng(2)
    n, h, p = 60, 12, 5
    Z = rng.normal(size=(n, h)) * rng.uniform(0.1, 3, size=h) + 1.0
    R = Z[:, :3] @ rng.normal(size=(3, p)) + rng.normal(size=(n, p)) * np.array([0.1, 1, 3, 10, 0.5])
    R += 4.0
    alpha, scores = choose_ridge(Z, R, intercept=True)
    Zc = Z - Z.mean(0)
    mean_eig = np.linalg.eigvalsh(Zc.T @ Zc).mean()
    brute = []
    for g in RIDGE_GRID:
        a = g * mean_eig
        dec = fit_decoder(Z, R, ridge=a, intercept=True)
        rss = ((R - dec.predict(Z)) ** 2).sum(0)
        H = Zc @ np.linalg.solve(Zc.T @ Zc + a * np.eye(h), Zc.T)
        df = np.trace(H) + 1
        var = R.var(0)
        brute.append(np.mean(rss / n / (1 - df / n) ** 2 / var))
    np.testing.assert_allclose(scores, brute, rtol=1e-8)
    assert alpha == pytest.approx(RIDGE_GRID[int(np.argmin(brute))] * mean_eig, rel=1e-10)
    from radlens_cli.lens.decoder import ridge_gcv

    a2, _, dec = ridge_gcv(Z, R, intercept=True)       # the decoder from the same moments
    ref = fit_decoder(Z, R, ridge=a2, intercept=True)
    assert a2 == alpha
    np.testing.assert_allclose(dec.theta, ref.theta, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(dec.bias, ref.bias, rtol=1e-7, atol=1e-10)
