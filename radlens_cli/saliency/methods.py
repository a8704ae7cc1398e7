"""Saliency maps of one scalar output per case: Grad-CAM, Grad-CAM++, EigenCAM, ScoreCAM, occlusion.

Every method takes `score`, a function (B, C, *spatial) tensor -> (B,) tensor (the output a
map explains, see model.py), the input `x` (1, C, *spatial) and, for the CAM methods, the
torch module `layer` that `score` runs (its output is the (1, K, *layer_spatial) activation).
Each returns a (*spatial) float64 numpy map on the input's grid.

Captum (radlens[saliency]) does the hooking, the gradients and the sliding windows:
Grad-CAM is its `LayerGradCam`, occlusion its `Occlusion`; Grad-CAM++, EigenCAM and
ScoreCAM, which Captum lacks, are their published formulas over the activations and
gradients Captum's `LayerActivation` / `LayerGradientXActivation` capture. CAMs are
upsampled trilinearly (Captum's `LayerAttribution.interpolate`) from the layer's grid.
"""

from __future__ import annotations

import math

import numpy as np

from radlens_cli.errors import ParameterError, RadlensError

CAM_METHODS = ("gradcam", "gradcampp", "eigencam", "scorecam")
METHODS = CAM_METHODS + ("occlusion",)
DEFAULT_METHODS = ",".join(METHODS)   # what `radlens saliency --methods` runs by default
LABELS = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "eigencam": "EigenCAM", "scorecam": "ScoreCAM",
          "occlusion": "occlusion"}


def captum():
    """The captum package, or an error naming the extra that installs it."""
    try:
        import captum.attr  # noqa: F401 - optional dependency
    except ImportError:
        raise RadlensError("saliency maps need Captum: pip install 'radlens[saliency]'") from None
    import captum

    return captum


def parse_methods(methods) -> list[str]:
    """A list of method names from `methods` (a list, or a comma-separated string)."""
    names = [m.strip().lower() for m in (methods.split(",") if isinstance(methods, str) else methods)
             if m and m.strip()]
    aliases = {"grad-cam": "gradcam", "grad-cam++": "gradcampp", "gradcam++": "gradcampp",
               "eigen-cam": "eigencam", "score-cam": "scorecam"}
    names = [aliases.get(m, m) for m in names]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise ParameterError(f"{{methods}}: unknown method(s) {', '.join(bad) or '(none given)'}; "
                             f"choose among {', '.join(METHODS)}", "methods")
    return list(dict.fromkeys(names))


def _upsample(cam, size):
    from captum.attr import LayerAttribution

    mode = {3: "trilinear", 2: "bilinear", 1: "linear"}[len(size)]
    return LayerAttribution.interpolate(cam, tuple(int(s) for s in size), interpolate_mode=mode)


def _to_map(t) -> np.ndarray:
    return t.detach().double().cpu().numpy().reshape(t.shape[2:])


def gradcam(score, x, layer) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): ReLU(sum_k mean(dy/dA_k) A_k), upsampled."""
    from captum.attr import LayerGradCam

    cam = LayerGradCam(score, layer).attribute(x, relu_attributions=True)
    return _to_map(_upsample(cam, x.shape[2:]))


def _acts_grads(score, x, layer):
    from captum.attr import LayerActivation, LayerGradientXActivation

    grads = LayerGradientXActivation(score, layer, multiply_by_inputs=False).attribute(x)
    acts = LayerActivation(score, layer).attribute(x)
    return acts.detach().double(), grads.detach().double()


def gradcampp(score, x, layer, eps: float = 1e-7) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018), with the exponential-score closed form:

    alpha = g^2 / (2 g^2 + sum_space(A) g^3), w_k = sum_space(alpha ReLU(g)),
    cam = ReLU(sum_k w_k A_k), g = dy/dA (alpha 0 where g is 0)."""
    acts, grads = _acts_grads(score, x, layer)
    axes = tuple(range(2, acts.ndim))
    g2, g3 = grads ** 2, grads ** 3
    sum_a = acts.sum(dim=axes, keepdim=True)
    denom = 2 * g2 + sum_a * g3
    denom = denom.where(denom != 0, denom.new_full((), eps))
    alpha = (g2 / denom).where(grads != 0, grads.new_zeros(()))
    w = (alpha * grads.clamp(min=0)).sum(dim=axes, keepdim=True)
    cam = (w * acts).sum(1, keepdim=True).clamp(min=0)
    return _to_map(_upsample(cam.to(x.dtype), x.shape[2:]))


def eigencam(score, x, layer) -> np.ndarray:
    """EigenCAM (Muhammad & Yeasin 2020): the activations' projection on their first
    principal component over space (channels as variables, centred), ReLU, upsampled.

    The component's sign is arbitrary; it is chosen so the projection correlates
    positively with the channel-summed activation (otherwise a ReLU could keep the
    background instead of the object)."""
    import torch
    from captum.attr import LayerActivation

    acts = LayerActivation(score, layer).attribute(x).detach().double()[0]  # (K, *sp)
    k = acts.shape[0]
    flat = acts.reshape(k, -1).T  # (N, K)
    centred = flat - flat.mean(0, keepdim=True)
    if flat.shape[0] < 2 or not torch.isfinite(centred).all() or float(centred.abs().max()) == 0:
        proj = torch.zeros(flat.shape[0], dtype=flat.dtype)
    else:
        _, _, vh = torch.linalg.svd(centred, full_matrices=False)
        proj = centred @ vh[0]
        ref = flat.sum(1)
        if float(((proj - proj.mean()) * (ref - ref.mean())).sum()) < 0:
            proj = -proj
    cam = proj.clamp(min=0).reshape((1, 1) + tuple(acts.shape[1:]))
    return _to_map(_upsample(cam.to(x.dtype), x.shape[2:]))


def scorecam(score, x, layer, batch_size: int = 16) -> np.ndarray:
    """ScoreCAM (Wang et al. 2020): each activation channel, upsampled and min-max scaled
    to [0, 1], masks the input; its weight is the softmax over channels of the output
    on the masked input; cam = ReLU(sum_k w_k A_k), upsampled."""
    import torch
    from captum.attr import LayerActivation

    acts = LayerActivation(score, layer).attribute(x).detach()
    up = _upsample(acts.transpose(0, 1), x.shape[2:])  # (K, 1, *sp)
    flat = up.reshape(up.shape[0], -1)
    lo, hi = flat.min(1).values, flat.max(1).values
    span = hi - lo
    norm = ((flat - lo[:, None]) / span.where(span > 0, torch.ones_like(span))[:, None]).reshape(up.shape)
    scores = []
    with torch.no_grad():
        for s in range(0, norm.shape[0], batch_size):
            scores.append(score(x * norm[s:s + batch_size]).detach().double().reshape(-1))
    w = torch.softmax(torch.cat(scores), 0)
    cam = (w[:, None] * acts.double()[0].reshape(acts.shape[1], -1)).sum(0).clamp(min=0)
    cam = cam.reshape((1, 1) + tuple(acts.shape[2:]))
    return _to_map(_upsample(cam.to(x.dtype), x.shape[2:]))


def occlusion_window(spatial, fraction: float = 0.25) -> tuple[tuple, tuple]:
    """(window, stride) per spatial axis: a quarter of the side (at least 1), side by side
    (4 x 4 x 4 = 64 forward passes; half-overlapping windows would take 343)."""
    window = tuple(max(1, int(round(n * fraction))) for n in spatial)
    return window, window


def occlusion(score, x, window=None, stride=None, batch_size: int = 8) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014) with Captum's `Occlusion`: each window
    (all channels) set to 0, the input's mean after normalisation; a voxel's value is the
    mean drop of the output over the windows covering it."""
    import torch
    from captum.attr import Occlusion

    spatial = tuple(x.shape[2:])
    if window is None:
        window, stride = occlusion_window(spatial)
    c = x.shape[1]
    with torch.no_grad():
        attr = Occlusion(score).attribute(x, sliding_window_shapes=(c,) + tuple(window),
                                          strides=(c,) + tuple(stride), baselines=0.0,
                                          perturbations_per_eval=batch_size)
    # every channel of a window gets the same value: one of them is the map
    return attr[0, 0].detach().double().cpu().numpy()


def occlusion_windows(spatial, window, stride):
    """Start indices per axis of the sliding windows Captum's Occlusion visits
    (ceil((n - w) / s) + 1 per axis, the last one clipped at the edge)."""
    return [list(range(0, (math.ceil((n - w) / s) + 1) * s, s)) for n, w, s in zip(spatial, window, stride)]


def occlusion_numpy(score_np, x: np.ndarray, window=None, stride=None, batch_size: int = 8) -> np.ndarray:
    """Occlusion for a model that is a numpy function (ONNX): the same windows, baseline
    and averaging as `occlusion`, written as a loop. score_np: (B, C, *sp) -> (B,)."""
    import itertools

    spatial = tuple(x.shape[2:])
    if window is None:
        window, stride = occlusion_window(spatial)
    base = float(np.asarray(score_np(x)).reshape(-1)[0])
    total = np.zeros(spatial, dtype=np.float64)
    count = np.zeros(spatial, dtype=np.float64)
    slices = [tuple(slice(s, min(s + w, n)) for s, w, n in zip(start, window, spatial))
              for start in itertools.product(*occlusion_windows(spatial, window, stride))]
    for b in range(0, len(slices), batch_size):
        chunk = slices[b:b + batch_size]
        batch = np.repeat(x, len(chunk), axis=0)
        for i, sl in enumerate(chunk):
            batch[(i, slice(None)) + sl] = 0.0
        out = np.asarray(score_np(batch), dtype=np.float64).reshape(-1)
        for sl, v in zip(chunk, out):
            total[sl] += base - v
            count[sl] += 1
    return total / np.maximum(count, 1)


def saliency_map(method: str, score, x, layer=None, **kw) -> np.ndarray:
    """The map of `method` (one of METHODS) for input x (1, C, *spatial)."""
    captum()
    if method == "occlusion":
        return occlusion(score, x, **kw)
    if layer is None:
        raise ParameterError(f"{{methods}} {method} needs a layer ({{layer}})", "methods", "layer")
    fn = {"gradcam": gradcam, "gradcampp": gradcampp, "eigencam": eigencam, "scorecam": scorecam}[method]
    return fn(score, x, layer, **kw)
