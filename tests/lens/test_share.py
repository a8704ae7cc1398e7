"""Share training, scaling, the batched sweep and SHARE.h5."""

import numpy as np
import pytest

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats.share import load_share, save_share
from radlens_cli.lens import fit_scaler, train_share
from radlens_cli.lens.share import ShareModel, activate, paper_grid


def _data(n=64, d=10, p=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    R = np.tanh(X[:, :p]) * 0.5 + 0.5
    return X, R


def test_scaler_drops_constant_and_nonfinite_and_lists_them():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20, 5)) * 10 + 3
    v[:, 1] = 4.2
    v[3, 3] = np.nan
    sc = fit_scaler(v, list("abcde"))
    assert sc.columns == ["a", "c", "e"]
    assert dict(sc.dropped) == {"b": "constant on train (value 4.2)", "d": "non-finite on train (1 case(s))"}
    s = sc.transform(v[:, [0, 2, 4]])
    np.testing.assert_allclose(s.min(0), 0, atol=1e-12)
    np.testing.assert_allclose(s.max(0), 1, atol=1e-12)
    z = fit_scaler(v, list("abcde"), "zscore").transform(v[:, [0, 2, 4]])
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-12)


def test_same_seed_same_weights_different_seed_differs():
    X, R = _data()
    a = train_share(X, R, hidden=8, epochs=3, batch_size=16, seed=3)
    b = train_share(X, R, hidden=8, epochs=3, batch_size=16, seed=3)
    c = train_share(X, R, hidden=8, epochs=3, batch_size=16, seed=4)
    assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
    assert not np.allclose(a.weight, c.weight)


def test_batched_grid_equals_separate_fits():
    X, R = _data()
    Xv, Rv = _data(n=20, seed=1)
    grid = [(0.0, 0.0), (1e-3, 0.0), (0.0, 1e-2), (1e-2, 1e-1)]
    fit = train_share(X, R, Xv, Rv, grid=grid, hidden=8, epochs=4, batch_size=16, seed=0)
    for g, lam in enumerate(grid):
        one = train_share(X, R, Xv, Rv, grid=[lam], hidden=8, epochs=4, batch_size=16, seed=0)
        np.testing.assert_allclose(fit.weight[g], one.weight[0], atol=2e-5)
        np.testing.assert_allclose(fit.val_l1[g], one.val_l1[0], rtol=1e-4)
    assert fit.best == int(np.argmin(fit.val_l1))


def test_training_reduces_l1_and_val_score_is_the_data_term():
    X, R = _data(n=128)
    before = train_share(X, R, X, R, hidden=16, epochs=1, batch_size=0, lr=1e-9, seed=0)
    after = train_share(X, R, X, R, hidden=16, epochs=40, batch_size=32, lr=1e-2, seed=0)
    assert after.train_l1[0] < 0.5 * before.train_l1[0]
    np.testing.assert_allclose(after.val_l1, after.train_l1, rtol=1e-5)


def test_paper_grid():
    g = paper_grid()
    assert len(g) == 24 and len(set(g)) == 24 and (1e-6, 1e-5) in g


@pytest.mark.parametrize("act", ["relu", "gelu", "tanh"])
def test_numpy_activation_matches_torch(act):
    import torch

    from radlens_cli.lens.share import _torch_act

    a = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(activate(a, act), _torch_act(act)(torch.tensor(a)).numpy(), atol=1e-12)


def test_share_file_roundtrip_and_hash(tmp_path):
    sc = fit_scaler(np.arange(12.0).reshape(4, 3) ** 2, ["a", "b", "c"])
    m = ShareModel(weight=np.ones((4, 2), np.float32), bias=np.zeros(2, np.float32), activation="relu",
                   embedding_columns=list("wxyz"), scaler=sc, sweep={"l1": np.zeros(1)})
    path = tmp_path / "s.h5"
    save_share(m, str(path))
    back = ShareModel.from_record(load_share(str(path)))
    assert back.share_hash == m.share_hash and back.columns == ["a", "b", "c"]
    np.testing.assert_array_equal(back.transform(np.ones((1, 4))), m.transform(np.ones((1, 4))))
    m2 = ShareModel(weight=np.full((4, 2), 2, np.float32), bias=m.bias, activation="relu",
                    embedding_columns=m.embedding_columns, scaler=sc)
    assert m2.share_hash != m.share_hash
    # a file whose weights were changed after writing is refused (its stored hash no longer fits)
    import h5py

    with h5py.File(path, "r+") as f:
        f["weight"][0, 0] = 5.0
    with pytest.raises(RadlensError, match="share_hash does not match"):
        ShareModel.from_record(load_share(str(path)))


@pytest.mark.parametrize("act", ["relu", "gelu", "tanh"])
def test_hand_written_gradients_equal_autograd(act):
    import torch

    from radlens_cli.lens.share import _torch_act, share_gradients

    g = torch.Generator().manual_seed(0)
    G, B, d, h, p = 3, 7, 5, 4, 6
    X, R = torch.randn(B, d, generator=g), torch.rand(B, p, generator=g)
    W1, b1 = torch.randn(G, d, h, generator=g), torch.randn(G, h, generator=g)
    W2, b2 = torch.randn(G, h, p, generator=g), torch.randn(G, p, generator=g)
    l1, l2 = torch.tensor([0.0, 1e-2, 3e-1]), torch.tensor([0.5, 0.0, 1e-1])
    params = [t.clone().double().requires_grad_() for t in (W1, b1, W2, b2)]
    w1, c1, w2, c2 = params
    P = torch.baddbmm(c2[:, None, :], _torch_act(act)(torch.einsum("nd,gdh->gnh", X.double(), w1)
                                                      + c1[:, None, :]), w2)
    loss = ((P - R.double()).abs().sum(2).mean(1)
            + l1.double() * (w1.abs().sum((1, 2)) + w2.abs().sum((1, 2)))
            + l2.double() * (w1.square().sum((1, 2)) + w2.square().sum((1, 2)))).sum()
    loss.backward()
    with torch.no_grad():
        got = share_gradients(torch, X.double(), R.double(), *[t.double() for t in (W1, b1, W2, b2)],
                              l1.double(), l2.double(), act)
    for a, b in zip(got, params):
        torch.testing.assert_close(a, b.grad, rtol=1e-10, atol=1e-12)
