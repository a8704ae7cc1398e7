"""The alignment onto the pre-trained basis, against independent computations."""

import numpy as np
import pytest

from radlens_cli.lens.align import exact_affine_map, fit_alignment, fit_similarity_alignment


def _X(n=80, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + rng.normal(size=d)


def test_similarity_undoes_rotation_scale_shift_and_maps_the_reference_by_identity():
    X = _X()
    rng = np.random.default_rng(1)
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    Y = 1.7 * X @ Q + rng.normal(size=6)
    a = fit_similarity_alignment(Y, X, exact_check=False)
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
    assert not a.exact_affine   # two unrelated draws: no exact affine map between them
    Yc, Xc = Y - Y.mean(0), X - X.mean(0)
    R, sc = orthogonal_procrustes(Yc, Xc)
    np.testing.assert_allclose(a.rotation, R, atol=1e-10)
    assert a.scale == pytest.approx(sc / (Yc ** 2).sum())


def test_more_dimensions_give_a_semi_orthogonal_map_and_whitened_undoes_any_linear_map():
    X = _X()
    rng = np.random.default_rng(4)
    Y = np.concatenate([X, X[:, :2] @ rng.normal(size=(2, 2))], axis=1)      # 8 dims, rank 6
    a = fit_similarity_alignment(Y, X, exact_check=False)
    assert a.rotation.shape == (8, 6)
    np.testing.assert_allclose(a.rotation.T @ a.rotation, np.eye(6), atol=1e-10)
    A = rng.normal(size=(6, 6)) * rng.uniform(0.5, 2, size=6)
    Z = X @ A + 3.0
    w = fit_alignment(Z, X, "whitened")
    np.testing.assert_allclose(w.apply(Z), X, atol=1e-8)
    assert not np.allclose(fit_similarity_alignment(Z, X, exact_check=False).apply(Z), X, atol=1e-3)
    e = fit_alignment(Z, X)   # the default finds the exact affine map: identical information
    assert e.exact_affine and e.kind == "similarity"
    np.testing.assert_allclose(e.apply(Z), X, atol=1e-8)


def test_compose_folds_the_alignment_into_a_linear_layer():
    X, Y = _X(seed=5), _X(seed=6)
    rng = np.random.default_rng(7)
    W, b = rng.normal(size=(6, 4)), rng.normal(size=4)
    for kind in ("similarity", "whitened"):
        a = fit_alignment(Y, X, kind)
        W2, b2 = a.compose(W, b)
        np.testing.assert_allclose(Y @ W2 + b2, a.apply(Y) @ W + b, atol=1e-10)


def test_exact_affine_map_only_for_identical_information():
    """Per-dimension rescaling, shift, permutation (float32 rounding included) are undone
    exactly; a checkpoint that gained or lost a direction, noise, or too few cases are not."""
    rng = np.random.default_rng(11)
    X = _X(n=200, d=12, seed=8)
    perm = rng.permutation(12)
    Y = (X * rng.uniform(0.3, 3.0, size=12))[:, perm] + rng.normal(size=12)
    a = fit_alignment(Y.astype(np.float32).astype(np.float64), X)
    assert a.exact_affine
    np.testing.assert_allclose(a.apply(Y), X, atol=1e-3 * np.abs(X).max())
    Xc = X - X.mean(0)
    gained = np.concatenate([Y, rng.normal(size=(200, 1))], axis=1)          # a new direction
    assert exact_affine_map(gained - gained.mean(0), Xc) is None
    lost = Y[:, :11]                                                          # a lost direction
    assert exact_affine_map(lost - lost.mean(0), Xc) is None
    noisy = Y + 1e-3 * rng.normal(size=Y.shape)
    assert exact_affine_map(noisy - noisy.mean(0), Xc) is None
    few = Y[:12]                                                              # n <= rank + 2
    assert exact_affine_map(few - few.mean(0), X[:12] - X[:12].mean(0)) is None
    assert not fit_alignment(noisy, X).exact_affine
