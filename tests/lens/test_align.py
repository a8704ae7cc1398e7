"""The alignment onto the pre-trained basis, against independent computations."""

import numpy as np
import pytest

from radlens_cli.lens.align import fit_alignment


def _X(n=80, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def test_similarity_undoes_rotation_scale_shift_and_maps_the_reference_by_identity():
    X = _X()
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    Y = 1.7 * X @ Q + rng.normal(size=6)
    a = fit_alignment(Y, X)
    np.testing.assert_allclose(a.apply(Y), X, atol=1e-10)
    np.testing.assert_allclose(a.rotation.T @ a.rotation, np.eye(6), atol=1e-12)
    assert a.scale == pytest.approx(1 / 1.7)
    same = fit_alignment(X, X)
    assert same.identity and np.array_equal(same.apply(X), X)


def test_similarity_is_the_least_squares_procrustes_solution():
    """No other orthogonal map and scale fits better (scipy's orthogonal_procrustes)."""
    from scipy.linalg import orthogonal_procrustes

    X, Y = _X(seed=2), _X(seed=3)
    a = fit_alignment(Y, X)
    Yc, Xc = Y - Y.mean(0), X - X.mean(0)
    R, sc = orthogonal_procrustes(Yc, Xc)
    np.testing.assert_allclose(a.rotation, R, atol=1e-10)
    assert a.scale == pytest.approx(sc / (Yc ** 2).sum())


def test_more_dimensions_give_a_semi_orthogonal_map_and_whitened_undoes_any_linear_map():
    X = _X()
    rng = np.random.default_rng(4)
    Y = np.concatenate([X, X[:, :2] @ rng.normal(size=(2, 2))], axis=1)      # 8 dims, rank 6
    a = fit_alignment(Y, X)
    assert a.rotation.shape == (8, 6)
    np.testing.assert_allclose(a.rotation.T @ a.rotation, np.eye(6), atol=1e-10)
    A = rng.normal(size=(6, 6)) * rng.uniform(0.5, 2, size=6)
    Z = X @ A + 3.0
    w = fit_alignment(Z, X, "whitened")
    np.testing.assert_allclose(w.apply(Z), X, atol=1e-8)
    assert not np.allclose(fit_alignment(Z, X).apply(Z), X, atol=1e-3)   # similarity cannot


def test_compose_folds_the_alignment_into_a_linear_layer():
    X, Y = _X(seed=5), _X(seed=6)
    rng = np.random.default_rng(7)
    W, b = rng.normal(size=(6, 4)), rng.normal(size=4)
    for kind in ("similarity", "whitened"):
        a = fit_alignment(Y, X, kind)
        W2, b2 = a.compose(W, b)
        np.testing.assert_allclose(Y @ W2 + b2, a.apply(Y) @ W + b, atol=1e-10)
