"""Each saliency method against an independent computation on a tiny 3D model."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radlens_cli.saliency import methods as M
from radlens_cli.saliency import metrics
from radlens_cli.saliency.model import LayerSite, Scorer
from tests.saliency.models import shared_act, tiny_classifier

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    model = tiny_classifier().double()
    x = torch.randn(1, 3, 8, 10, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scorer = Scorer(model)
    scorer.prepare(x, np.ones(x.shape[2:]))
    return model, x, scorer


def hooked(model, x, cls):
    """Activations of conv2 and d(logit cls)/d(activations) by a hand-written forward hook."""
    store = {}

    def hook(mod, i, o):
        store["a"] = o
        o.register_hook(lambda g: store.__setitem__("g", g))
    h = model.conv2.register_forward_hook(hook)
    try:
        model(x)[0, cls].backward()
    finally:
        h.remove()
    return store["a"].detach()[0].numpy(), store["g"][0].numpy()


def up(cam, size):
    t = torch.from_numpy(np.ascontiguousarray(cam))[None, None]
    return F.interpolate(t, size=size, mode="trilinear").numpy()[0, 0]


def test_gradcam_matches_hooks(setup):
    model, x, scorer = setup
    a, g = hooked(model, x, scorer.index)
    want = up(np.maximum(np.einsum("k,k...->...", g.mean(axis=(1, 2, 3)), a), 0), x.shape[2:])
    got = M.gradcam(scorer, x, model.conv2)
    assert got.shape == tuple(x.shape[2:])
    assert np.allclose(got, want, atol=1e-10) and want.max() > 0


def test_gradcampp_matches_paper_formula(setup):
    model, x, scorer = setup
    a, g = hooked(model, x, scorer.index)
    alpha = np.zeros_like(g)
    num = g ** 2
    den = 2 * g ** 2 + a.sum(axis=(1, 2, 3), keepdims=True) * g ** 3
    nz = (g != 0) & (den != 0)
    alpha[nz] = num[nz] / den[nz]
    w = (alpha * np.maximum(g, 0)).sum(axis=(1, 2, 3))
    want = up(np.maximum(np.einsum("k,k...->...", w, a), 0), x.shape[2:])
    assert np.allclose(M.gradcampp(scorer, x, model.conv2), want, atol=1e-10) and want.max() > 0


def test_eigencam_is_the_first_principal_component(setup):
    model, x, scorer = setup
    a, _ = hooked(model, x, scorer.index)
    flat = a.reshape(a.shape[0], -1).T
    c = flat - flat.mean(0)
    # the first principal direction by power iteration on the covariance (not an SVD)
    v = np.ones(c.shape[1])
    for _ in range(500):
        v = c.T @ (c @ v)
        v /= np.linalg.norm(v)
    p = c @ v
    if np.corrcoef(p, flat.sum(1))[0, 1] < 0:
        p = -p
    want = up(np.maximum(p, 0).reshape(a.shape[1:]), x.shape[2:])
    assert np.allclose(M.eigencam(scorer, x, model.conv2), want, atol=1e-8)


def test_scorecam_by_explicit_masking(setup):
    model, x, scorer = setup
    a, _ = hooked(model, x, scorer.index)
    scores = []
    for k in range(a.shape[0]):
        u = up(a[k], x.shape[2:])
        u = (u - u.min()) / (u.max() - u.min()) if u.max() > u.min() else u - u.min()
        with torch.no_grad():
            scores.append(float(model(x * torch.from_numpy(u))[0, scorer.index]))
    w = np.exp(np.array(scores) - max(scores))
    w /= w.sum()
    want = up(np.maximum(np.einsum("k,k...->...", w, a), 0), x.shape[2:])
    assert np.allclose(M.scorecam(scorer, x, model.conv2, batch_size=4), want, atol=1e-10)


def test_occlusion_by_explicit_masking(setup):
    model, x, scorer = setup
    window, stride = (2, 3, 3), (1, 2, 2)
    spatial = x.shape[2:]
    total, count = np.zeros(spatial), np.zeros(spatial)
    with torch.no_grad():
        base = float(model(x)[0, scorer.index])
        starts = [range(0, n - w + s, s) if (n - w) % s == 0 else range(0, n - w + s + 1, s)
                  for n, w, s in zip(spatial, window, stride)]
        for st in itertools.product(*[list(r) for r in starts]):
            sl = tuple(slice(a0, min(a0 + w, n)) for a0, w, n in zip(st, window, spatial))
            if any(s.start >= n for s, n in zip(sl, spatial)):
                continue
            xo = x.clone()
            xo[(0, slice(None)) + sl] = 0
            total[sl] += base - float(model(xo)[0, scorer.index])
            count[sl] += 1
    want = total / count
    got = M.occlusion(scorer, x, window=window, stride=stride)
    assert np.allclose(got, want, atol=1e-10)
    # the numpy loop used for ONNX models gives the same map
    def np_score(a):
        with torch.no_grad():
            return scorer(torch.from_numpy(a)).numpy()
    assert np.allclose(M.occlusion_numpy(np_score, x.numpy(), window, stride), want, atol=1e-10)


def test_call_index_takes_the_kth_call():
    model = shared_act().double()
    x = torch.randn(1, 3, 8, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.raises(Exception, match="act#1 .*act#2 "):
        LayerSite(model, "act", x)
    site = LayerSite(model, "act#2", x)
    assert site.name == "act#2" and site.shape == (1, 6, 4, 4, 4)
    scorer = Scorer(lambda t: (site.reset(), model(t))[1])
    scorer.prepare(x, np.ones(x.shape[2:]))
    store = {}

    def hook(mod, i, o):
        store.setdefault("calls", []).append(o)
        if len(store["calls"]) == 2:
            o.register_hook(lambda g: store.__setitem__("g", g))
    h = model.act.register_forward_hook(hook)
    try:
        model(x)[0, scorer.index].backward()
    finally:
        h.remove()
    a, g = store["calls"][1].detach()[0].numpy(), store["g"][0].numpy()
    want = up(np.maximum(np.einsum("k,k...->...", g.mean(axis=(1, 2, 3)), a), 0), x.shape[2:])
    assert np.allclose(M.gradcam(scorer, x, site.module), want, atol=1e-10)
    assert LayerSite(model, "act#last", x).name == "act#2"


def test_metrics_closed_form():
    m = np.zeros((4, 4, 4))
    m[0, 0, 0], m[1, 1, 1], m[3, 3, 3] = 3.0, 1.0, -5.0
    mask = np.zeros_like(m)
    mask[0, 0, 0] = 1
    assert metrics.mass_in_mask(m, mask) == pytest.approx(0.75)
    assert metrics.deletion_auc(np.linspace(1, 0, 11)) == pytest.approx(0.5)
    a = np.arange(64.0).reshape(4, 4, 4)
    assert metrics.spearman(a, a ** 3) == pytest.approx(1.0)
    assert metrics.spearman(a, -a) == pytest.approx(-1.0)
    assert metrics.iou_top(a, a) == 1.0 and metrics.iou_top(a, -a) == 0.0
    x = np.stack([a, a + 100])
    d = metrics.deletion_inputs(x, np.zeros_like(x), a, steps=[0.0, 0.5, 1.0])
    assert (d[0] == x).all() and (d[2] == 0).all()
    assert (d[1][:, a >= 32] == 0).all() and (d[1][:, a < 32] == x[:, a < 32]).all()


def test_parse_methods_names_the_bad_one():
    assert M.parse_methods("Grad-CAM++,occlusion,gradcam") == ["gradcampp", "occlusion", "gradcam"]
    with pytest.raises(Exception, match="lime"):
        M.parse_methods("gradcam,lime")


def test_explainer_output_and_deletion_equal_the_explicit_computation():
    """The Explainer fixes the output on the first map's own forward pass (no separate one) and
    takes the deletion curve's end points from the unperturbed output and one blurred pass per
    case: the table equals Scorer.prepare and the full 11-point curve computed explicitly."""
    from radlens_cli.saliency.model import ScoredModel
    from radlens_cli.saliency.run import Explainer

    model = tiny_classifier().eval()
    rng = np.random.default_rng(4)
    vol = rng.normal(size=(3, 8, 10, 12)).astype(np.float32)
    mask = np.zeros(vol.shape[1:], dtype=np.uint8)
    mask[2:6, 3:8, 4:9] = 1
    sm = ScoredModel("tiny", "factory", None, torch.device("cpu"), model=model)
    for first in ("gradcam", "occlusion"):
        ex = Explainer(sm, [first, "gradcampp"], layer="conv2", deletion=True, batch_size=4)
        ex.prepare((1,) + vol.shape)
        res = ex("c0", vol, mask)
        x = torch.from_numpy(vol)[None]
        ref = Scorer(model)
        want = ref.prepare(x, mask)
        blurred = metrics.blur(vol)
        for row in res.rows:
            assert row["output_index"] == want["output_index"]
            assert row["output"] == pytest.approx(want["output"], rel=1e-6)
            batch = metrics.deletion_inputs(vol, blurred, res.maps[row["method"]])
            with torch.no_grad():
                curve = np.concatenate([ref(torch.from_numpy(batch[s:s + 1].astype(np.float32))).double().numpy()
                                        for s in range(len(batch))])
            assert row["deletion_auc"] == pytest.approx(metrics.deletion_auc(curve), rel=1e-5, abs=1e-6)
        assert res.maps[first].shape == vol.shape[1:]
    # without --deletion the column is empty, and Grad-CAM alone is one forward pass per case
    ex = Explainer(sm, ["gradcam"], layer="conv2", batch_size=4)
    ex.prepare((1,) + vol.shape)   # the layer, resolved once per run
    calls = []
    hook = model.register_forward_hook(lambda *a: calls.append(1))
    try:
        res = ex("c0", vol, mask)
    finally:
        hook.remove()
    assert np.isnan(res.rows[0]["deletion_auc"]) and len(calls) == 1
    assert res.rows[0]["output"] == pytest.approx(want["output"], rel=1e-6)
