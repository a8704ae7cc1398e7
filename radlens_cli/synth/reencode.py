"""Cohorts for validating the lens under re-encodings of the same information (issue 23).

Independent of the test fixtures (tests/lens/generators.py, benchmarks/validity*.py):
latents -> radiomics through skewed, heavy-tailed, non-linear columns named like
pyradiomics output over 3 modalities x 7 families x 2 image types (about 150 columns in
about 34 Table-1 groups); latents -> embeddings through a random two-layer network
(tanh then ReLU, as a CNN's pooled features: non-negative, skewed, some dims dead) plus
noise. `encoder` picks the network's kind (ENCODERS): "saturating" (the default) or
"smooth", with the same random draws. The checkpoint compared with the pre-trained one is
one of:

nulls (the information is the same, or equal in expectation)
- second_run: a NEW random network of the same latents, fresh noise (a second training run)
- tanh, power: a monotone map of every (standardised) dimension: tanh, sign(x)|x|^1.5
- redundant: the pre-trained embeddings hold 10 % dims that are a fixed function of the
  others; the checkpoint zeroes them
- fresh_noise: the same network, a new draw of the embedding noise
- rotation, scale, shift: exact maps (random orthogonal; x 3.7; + 5)

planted (the information changes)
- planted: one network over all latents; the checkpoint loses the `down` latents and
  gains the `up` latents (inputs zeroed). Planted columns are r = a u_shared + b u_k + e
  (unit variances), so the true change of the best predictor's R^2 is b^2, drawn in
  [0.10, 0.15]; `truth` holds it per column (0 for the others).
- planted_new: the same change with a new network for the checkpoint (a new encoding).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.io.tables import CaseTable

MODALITIES = ("t2", "adc", "dwi")
FAMILIES = {
    "shape": ("Sphericity", "Elongation", "SurfaceVolumeRatio"),
    "firstorder": ("Energy", "Entropy", "Kurtosis", "Skewness", "Median", "Range"),
    "glcm": ("Contrast", "Correlation", "JointEnergy", "Idm", "ClusterShade"),
    "glrlm": ("RunEntropy", "ShortRunEmphasis", "LongRunEmphasis"),
    "glszm": ("ZoneEntropy", "SmallAreaEmphasis", "LargeAreaEmphasis"),
    "gldm": ("DependenceEntropy", "LargeDependenceEmphasis", "SmallDependenceEmphasis"),
    "ngtdm": ("Busyness", "Coarseness", "Complexity"),
}
IMAGE_TYPES = ("original", "wavelet-HLL")
NULLS = ("second_run", "tanh", "power", "redundant", "fresh_noise", "rotation", "scale", "shift")
PLANTED = ("planted", "planted_new")
CONDITIONS = NULLS + PLANTED


@dataclass
class Cohort:
    case_id: np.ndarray
    split: np.ndarray
    columns: list
    radiomics: np.ndarray          # (n, p)
    emb_pre: np.ndarray            # (n, d)
    emb: dict = field(default_factory=dict)     # condition -> (n, d') checkpoint embeddings
    truth: dict = field(default_factory=dict)   # condition -> (p,) true delta R^2 (0: none)
    latents: np.ndarray | None = None           # (n, k) the latents the pre-trained network encodes


# (tanh gain, ReLU offset) of the random networks: "saturating" (the default) drives tanh
# into saturation and leaves about a third of the outputs mostly zero, so two networks of
# the same latents carry them to measurably different degrees at finite n; "smooth" keeps
# tanh nearer its linear range and most outputs alive, so both carry them about equally.
ENCODERS = {"saturating": (1.3, -0.3), "smooth": (1.0, 0.3)}
ENCODER = "saturating"


def _net(rng, k_in, d, width=48, encoder=ENCODER):
    gain, offset = ENCODERS[encoder]
    A1 = rng.normal(size=(k_in, width)) / np.sqrt(k_in)
    c1 = rng.normal(size=width) * 0.3
    A2 = rng.normal(size=(width, d)) * 1.6 / np.sqrt(width)
    c2 = rng.normal(size=d) * 0.4 + offset
    return lambda U: np.maximum(np.tanh(U @ A1 * gain + c1) @ A2 + c2, 0.0)


def make_cohort(n: int, d: int = 64, seed: int = 0, conditions=CONDITIONS, n_shared: int = 10,
                n_planted: int = 12, noise: float = 0.05, val_fraction: float = 0.1,
                test_fraction: float = 0.3, encoder: str = ENCODER) -> Cohort:
    """One cohort with every condition's checkpoint embeddings (module docstring); encoder:
    the kind of random network, a key of ENCODERS (the same draws for either)."""
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
    rng = np.random.default_rng(7_000_003 + 7919 * seed)
    L_in = n_shared + 2                       # latents every checkpoint encodes
    U = rng.normal(size=(n, L_in))
    U_hidden = rng.normal(size=(n, 3))        # latents no checkpoint encodes
    U_down = rng.normal(size=(n, 2))          # lost by the planted checkpoint
    U_up = rng.normal(size=(n, 2))            # gained by it
    slots = [(m, f, feat, t) for t in IMAGE_TYPES for f, fs in FAMILIES.items()
             for feat in fs for m in MODALITIES]
    pick = rng.permutation(len(slots))
    cols, vals, truth = [], [], []
    k = 0

    def name():
        nonlocal k
        m, f, feat, t = slots[pick[k]]
        k += 1
        return f"{m}/{t}_{f}_{feat}"

    # planted columns first (r = a u_shared + b u_k + e, unit variance; true delta = +-b^2)
    for sign, lat in ((-1, U_down), (+1, U_up)):
        for i in range(n_planted):
            b2 = rng.uniform(0.10, 0.15)
            a2 = 0.55
            u0 = U[:, rng.integers(L_in)]
            e = rng.normal(size=n) * np.sqrt(1 - a2 - b2)
            v = np.sqrt(a2) * u0 + np.sqrt(b2) * lat[:, i % lat.shape[1]] + e
            cols.append(name())
            vals.append(7.0 + 2.5 * v)
            truth.append(sign * b2)
    n_rest = len(slots) - k - 6
    for i in range(n_rest):                    # non-linear columns of the shared latents
        w = rng.normal(size=L_in) * (rng.random(L_in) < 0.3)
        w[rng.integers(L_in)] += 1.0
        u = U @ w / np.linalg.norm(w)
        if i % 7 == 6:
            u = 0.6 * u + 0.8 * U_hidden[:, i % 3]          # partly undecodable
        u = u + rng.normal(size=n) * rng.uniform(0.2, 0.8)
        form = i % 5
        v = (np.exp(0.6 * u) if form == 0 else u * u + 0.7 * u if form == 1
             else np.tanh(u) + 0.15 * u if form == 2 else u if form == 3
             else u + 0.4 * rng.standard_t(df=3, size=n))
        cols.append(name())
        vals.append(v * 10.0 ** rng.uniform(-2, 3))
        truth.append(0.0)
    for _ in range(6):                         # heavy-tailed columns of no latent
        cols.append(name())
        vals.append(np.exp(1.5 * rng.normal(size=n)) * 100.0)
        truth.append(0.0)
    R = np.stack(vals, axis=1)
    truth = np.asarray(truth)
    ids = np.array([f"C{seed:03d}-{i:05d}" for i in range(n)], dtype=object)
    n_va, n_te = int(round(val_fraction * n)), int(round(test_fraction * n))
    split = np.array(["train"] * (n - n_va - n_te) + ["val"] * n_va + ["test"] * n_te, dtype=object)
    split = split[rng.permutation(n)]

    full = np.concatenate([U, U_down, U_up], axis=1)          # one network over all latents
    net = _net(rng, full.shape[1], d, encoder=encoder)
    n_red = max(1, d // 10)

    def encode(f, inputs, r):
        return f(inputs) + noise * r.normal(size=(n, d))

    def pre_inputs():
        return np.concatenate([U, U_down, np.zeros_like(U_up)], axis=1)

    X = encode(net, pre_inputs(), np.random.default_rng([seed, 1]))
    # redundant dims: a fixed function of the other dims (same information)
    Wr = rng.normal(size=(d - n_red, n_red)) / np.sqrt(d - n_red)
    X[:, d - n_red:] = np.tanh(X[:, :d - n_red] @ Wr)
    coh = Cohort(case_id=ids, split=split, columns=cols, radiomics=R, emb_pre=X,
                 latents=np.concatenate([U, U_down], axis=1))

    def standardised(Y):
        s = Y.std(axis=0)
        return (Y - Y.mean(axis=0)) / np.where(s > 0, s, 1.0)

    for c in conditions:
        r = np.random.default_rng([seed, 100 + CONDITIONS.index(c)])
        t = np.zeros(len(cols))
        if c == "second_run":
            Y = encode(_net(r, full.shape[1], d, encoder=encoder), pre_inputs(), r)
        elif c == "tanh":
            Y = np.tanh(standardised(X))
        elif c == "power":
            Z = standardised(X)
            Y = np.sign(Z) * np.abs(Z) ** 1.5
        elif c == "redundant":
            Y = X.copy()
            Y[:, d - n_red:] = 0.0
        elif c == "fresh_noise":
            Y = encode(net, pre_inputs(), r)
            Y[:, d - n_red:] = np.tanh(Y[:, :d - n_red] @ Wr)
        elif c == "rotation":
            Q, _ = np.linalg.qr(r.normal(size=(d, d)))
            Y = X @ Q
        elif c == "scale":
            Y = 3.7 * X
        elif c == "shift":
            Y = X + 5.0
        elif c in PLANTED:
            inputs = np.concatenate([U, np.zeros_like(U_down), U_up], axis=1)
            f = net if c == "planted" else _net(r, full.shape[1], d, encoder=encoder)
            Y = encode(f, inputs, r)
            t = truth.copy()
        else:
            raise ValueError(f"unknown condition {c!r}")
        coh.emb[c] = Y
        coh.truth[c] = t
    return coh


def tables(coh: Cohort, condition: str | None = None):
    """(embeddings CaseTable of the pre-trained checkpoint or of `condition`, radiomics CaseTable)."""

    Y = coh.emb_pre if condition is None else coh.emb[condition]
    emb = CaseTable(case_id=coh.case_id, values=np.asarray(Y, np.float64),
                    columns=[f"emb_{i:04d}" for i in range(Y.shape[1])], split=coh.split)
    rad = CaseTable(case_id=coh.case_id, values=coh.radiomics, columns=list(coh.columns),
                    split=coh.split)
    emb.path, rad.path = f"emb_{condition or 'pre'}", "radiomics"
    return emb, rad
