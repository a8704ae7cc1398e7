"""The symmetric, re-split lens (the default since 0.3.0, `method="symmetric"`).

What a flag of this lens means: a feature's held-out decodability changed by more than
re-encoding the same information changes it (docs/validity.md). 0.2.0's calibrated lens
read every checkpoint through ONE share fitted on the pre-trained embeddings, so any
encoding of the same information other than a similarity transform (a second training run,
a monotone per-dimension map, redundant dimensions) read as lost decodability, and its
tests, conditional on one fitted pipeline, turned that O(1) bias into "significance" as
cohorts grew. Here:

1. The protocol, not a model, is shared. fit-share draws R random re-splits of the cases
   of the train and evaluation splits into a share part, a decoder part and a test part
   (seeded; stored in SHARE.h5). Every checkpoint gets, in every re-split, its OWN share
   fitted on the same share cases from the same seeded initialisation, its own ridge alpha
   (generalised cross-validation on the decoder cases) and its own decoder; R^2 is read on
   the test cases. The pipeline is the same function for every checkpoint (symmetric).
2. Before share, each checkpoint's embeddings are centred and scaled by one factor so that
   their total variance equals the pre-trained embeddings' (share's initialisation,
   learning rate and penalties see inputs of the same size); never a least-squares slope,
   which shrinks every checkpoint that is not an exact map of the reference.
3. Exact-affine check kept: embeddings that equal the reference's, or are an exact
   invertible affine map of them (rotation, permutation, per-dimension scale, shift),
   carry the same information; they are decoded through the reference's own shares on the
   reference's embeddings, so every change is exactly 0.
4. Inference (lens.interval) is over the R re-splits, not conditional on one fitted
   pipeline: Nadeau & Bengio's corrected resampled t, against the interval null
   |delta| <= null_delta.

R^2 enters the statistics clipped below at 0 (R2_CLIP): a feature no decoder reads
(R^2 <= 0, as heavy-tailed columns give, e.g. -5,642) has decodability 0, so no mean is
dominated by one column.

The R share fits of one checkpoint run as one batched model (full batch: each re-split's
weights carry a leading dimension, its own cases a batch dimension), as the lambda sweep
trains its 24 grid points at once; `device` runs them on a GPU unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.devices import resolve_device
from radlens_cli.errors import RadlensError
from radlens_cli.lens.align import exact_affine_map
from radlens_cli.lens.checks import embedding_params, require_same_preprocessing
from radlens_cli.lens.decoder import importance, r2_score, ridge_gcv
from radlens_cli.lens.power import assess, recommended_hidden
from radlens_cli.lens.scaling import fit_scaler
from radlens_cli.lens.share import (ACTIVATIONS, REDUCTIONS, ShareModel, activate, batched_init,
                                   l1_head_gradients, train_share)
from radlens_cli.lens.steps import DecodeResult, _said_missing, join, require_split
from radlens_cli.names import table_column_meta as column_meta

# The protocol's defaults, in one place (fit-share's options fall back to these).
N_RESPLITS = 10
SHARE_FRACTION = 0.4        # of the pooled cases: share is fitted on these
TEST_FRACTION = 0.3         # R^2 is read on these; the decoder is fitted on the rest
EPOCHS = 150                # full-batch Adam steps of each share fit
LR = 6e-3
R2_CLIP = 0.0               # R^2 is clipped below at this value in every statistic


@dataclass
class Protocol:
    """What every checkpoint's decode repeats: the re-splits and the share settings."""

    case_id: np.ndarray          # (m,) the pooled cases, sorted by case_id
    assignment: np.ndarray       # (R, m) int8: 0 share, 1 decoder, 2 test
    hidden: int
    activation: str
    l1: float
    l2: float
    epochs: int
    lr: float
    seed: int
    reduction: str = "mean"

    @property
    def n_resplits(self) -> int:
        return int(self.assignment.shape[0])

    def parts(self, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(share, decoder, test) positions in case_id of re-split r."""
        a = self.assignment[r]
        return np.flatnonzero(a == 0), np.flatnonzero(a == 1), np.flatnonzero(a == 2)

    @property
    def sizes(self) -> tuple[int, int, int]:
        a = self.assignment[0]
        return int((a == 0).sum()), int((a == 1).sum()), int((a == 2).sum())

    def digest(self) -> str:
        h = hashlib.sha256()
        h.update("\n".join(map(str, self.case_id)).encode())
        h.update(np.ascontiguousarray(self.assignment, dtype=np.int8).tobytes())
        h.update(f"{self.hidden}|{self.activation}|{self.l1!r}|{self.l2!r}|{self.epochs}|"
                 f"{self.lr!r}|{self.seed}|{self.reduction}".encode())
        return h.hexdigest()


def make_resplits(case_id, n_resplits: int = N_RESPLITS, seed: int = 0,
                  share_fraction: float = SHARE_FRACTION,
                  test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(sorted case ids, (R, m) assignment): R seeded random partitions of the cases into
    share (0), decoder (1) and test (2) parts of fixed sizes. Depends on the case ids only,
    never on the order of the rows."""
    ids = np.asarray([str(c) for c in case_id], dtype=object)
    ids = ids[np.argsort(ids, kind="stable")]
    m = len(ids)
    if n_resplits < 2:
        raise ValueError("n_resplits must be at least 2 (the test's variance is over re-splits)")
    if not (0 < share_fraction < 1 and 0 < test_fraction < 1 and share_fraction + test_fraction < 1):
        raise ValueError("share_fraction and test_fraction must be in (0, 1) with a sum below 1")
    n_s = int(round(share_fraction * m))
    n_t = int(round(test_fraction * m))
    n_d = m - n_s - n_t
    if min(n_s, n_d, n_t) < 3:
        raise RadlensError(f"{m} case(s) in the train and evaluation splits: too few to re-split "
                           f"into share ({n_s}), decoder ({n_d}) and test ({n_t}) parts of at "
                           f"least 3 cases each")
    out = np.empty((n_resplits, m), dtype=np.int8)
    base = np.array([0] * n_s + [1] * n_d + [2] * n_t, dtype=np.int8)
    for r in range(n_resplits):
        perm = np.random.default_rng([int(seed), r]).permutation(m)
        out[r, perm] = base
    return ids, out


def total_variance(X: np.ndarray) -> float:
    X = np.asarray(X, dtype=np.float64)
    return float(((X - X.mean(axis=0)) ** 2).sum() / max(1, X.shape[0] - 1))


def standardise(X: np.ndarray, ref_total_variance: float) -> tuple[np.ndarray, float]:
    """(centred X scaled so its total variance is the reference's, the scale)."""
    X = np.asarray(X, dtype=np.float64)
    tv = total_variance(X)
    if tv <= 0:
        raise RadlensError("the embeddings are constant on the pooled cases")
    s = float(np.sqrt(ref_total_variance / tv))
    return (X - X.mean(axis=0)) * s, s


# ---------------------------------------------------------------- batched share fits

def train_shares(X: np.ndarray, R: np.ndarray, hidden: int, activation: str = "relu",
                 epochs: int = EPOCHS, lr: float = LR, l1: float = 1e-6, l2: float = 1e-5,
                 seed: int = 0, device: str = "cpu", reduction: str = "mean",
                 progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Fit G share models at once, model g on its own cases: X (G, n, d), R (G, n, p).

    Full-batch Adam on the paper's loss (mean |head(share(x)) - r| + l1 |W|_1 + l2 |W|^2
    over share and head weights), every model from the same seeded initialisation
    (torch.nn.Linear's uniform +-1/sqrt(fan_in)), so the G fits differ by their cases only
    and two checkpoints' fits on the same cases differ by their embeddings only.
    Deterministic on CPU. Returns (weights (G, d, h), biases (G, h)), float32."""
    import torch

    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown loss reduction {reduction!r}")
    dev = str(resolve_device(device))
    prev = torch.are_deterministic_algorithms_enabled()
    if dev == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        G, n, d = X.shape
        p = R.shape[2]
        params = batched_init(torch, torch.Generator().manual_seed(int(seed)), G, d, hidden, p, dev)
        W1, b1, W2, b2 = params
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)).to(dev)
        Rt = torch.from_numpy(np.ascontiguousarray(R, dtype=np.float32)).to(dev)
        try:
            opt = torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError):  # pragma: no cover - device without fused Adam
            opt = torch.optim.Adam(params, lr=lr)
        N = n * (p if reduction == "mean" else 1)
        XT = Xt.transpose(1, 2)
        for _ in range(int(epochs)):
            with torch.no_grad():
                grads = resplit_gradients(torch, Xt, XT, Rt, W1, b1, W2, b2, float(l1),
                                          float(l2), activation, N)
            for prm, g in zip(params, grads):
                prm.grad = g
            opt.step()
            if progress is not None:
                progress()
        return W1.detach().cpu().numpy(), b1.detach().cpu().numpy()
    finally:
        torch.use_deterministic_algorithms(prev)


def resplit_gradients(torch, X, XT, R, W1, b1, W2, b2, l1: float, l2: float, activation: str,
                      N: int):
    """Gradients of sum_g [sum_{n,p} |head_g(share_g(x_gn)) - r_gn| / N + l1 |W_g|_1
    + l2 |W_g|^2] w.r.t. (W1, b1, W2, b2), every model g on its own cases X[g] (XT: X
    transposed on its last two axes), written out by hand as lens.share.share_gradients
    is (tested against autograd)."""

    A = torch.baddbmm(b1[:, None, :], X, W1)                       # (G, n, h)
    gA, gW2, gb2 = l1_head_gradients(torch, A, W2, b2, R, N, activation)
    gW1 = torch.bmm(XT, gA)
    gb1 = gA.sum(dim=1)
    for W, gW in ((W1, gW1), (W2, gW2)):
        gW.add_(torch.sign(W), alpha=l1)
        gW.add_(W, alpha=2.0 * l2)
    return gW1, gb1, gW2, gb2


def fit_protocol_shares(proto: Protocol, X: np.ndarray, R: np.ndarray, device: str = "cpu",
                        progress=None) -> tuple[np.ndarray, np.ndarray]:
    """Every re-split's share on (standardised) embeddings X and scaled radiomics R, both
    in the order of proto.case_id."""
    idx = np.stack([proto.parts(r)[0] for r in range(proto.n_resplits)])
    return train_shares(np.asarray(X, np.float32)[idx], np.asarray(R, np.float32)[idx],
                        hidden=proto.hidden, activation=proto.activation, epochs=proto.epochs,
                        lr=proto.lr, l1=proto.l1, l2=proto.l2, seed=proto.seed, device=device,
                        reduction=proto.reduction, progress=progress)


# ---------------------------------------------------------------- decoding

@dataclass
class ResplitReadout:
    """A checkpoint's decoded features as a function of its raw embedding E (n, d), per
    re-split r exactly as decode_symmetric computes them:

        Xs = (E - center) * scale            (or (E - center) @ input_map for an exact
                                              affine map of the reference, read through
                                              the reference's standardised embeddings)
        Z_r = act(Xs W_r + b_r);  pred_r = Z_r theta_r^T + theta_bias_r

    center: the mean of the checkpoint's embeddings over the protocol's cases; scale: the
    total-variance factor (ResplitDecodeResult.embedding_scale). DEC.h5 stores it under
    `resplit/` (center, share_weight, share_bias, theta, theta_bias, input_map)."""

    center: np.ndarray          # (d,)
    scale: float
    weight: np.ndarray          # (R, d', h) each re-split's share
    bias: np.ndarray            # (R, h)
    theta: np.ndarray           # (R, p, h) each re-split's decoder
    theta_bias: np.ndarray      # (R, p)
    activation: str
    input_map: np.ndarray | None = None   # (d, d') for an exact-affine checkpoint, else None

    def standardised(self, E: np.ndarray) -> np.ndarray:
        Ec = np.asarray(E, dtype=np.float64) - np.asarray(self.center, np.float64)
        return Ec @ np.asarray(self.input_map, np.float64) if self.input_map is not None else Ec * self.scale

    def predict(self, E: np.ndarray, columns=None) -> np.ndarray:
        """(R, n, p) every re-split's predictions (columns: indices into p, default all)."""
        Xs = self.standardised(E)
        th = np.asarray(self.theta, np.float64)
        tb = np.asarray(self.theta_bias, np.float64)
        if columns is not None:
            th, tb = th[:, columns], tb[:, columns]
        out = []
        for r in range(th.shape[0]):
            Z = activate(Xs @ np.asarray(self.weight[r], np.float64) + np.asarray(self.bias[r], np.float64),
                         self.activation)
            out.append(Z @ th[r].T + tb[r])
        return np.stack(out)

    def to_datasets(self) -> dict:
        out = {"resplit/center": np.asarray(self.center, np.float64),
               "resplit/share_weight": np.asarray(self.weight, np.float32),
               "resplit/share_bias": np.asarray(self.bias, np.float32),
               "resplit/theta": np.asarray(self.theta, np.float64),
               "resplit/theta_bias": np.asarray(self.theta_bias, np.float64)}
        if self.input_map is not None:
            out["resplit/input_map"] = np.asarray(self.input_map, np.float64)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict, scale: float, activation: str) -> "ResplitReadout":
        """From the `resplit/...` datasets of DEC.h5 (to_datasets) and its embedding_scale."""
        return cls(center=arrays["resplit/center"], scale=float(scale), weight=arrays["resplit/share_weight"],
                   bias=arrays["resplit/share_bias"], theta=arrays["resplit/theta"],
                   theta_bias=arrays["resplit/theta_bias"], activation=activation,
                   input_map=arrays.get("resplit/input_map"))


READOUT_DATASETS = ("resplit/center", "resplit/share_weight", "resplit/share_bias", "resplit/theta",
                    "resplit/theta_bias")

@dataclass
class ResplitDecode:
    """One checkpoint read through every re-split (arrays indexed by re-split first)."""

    r2: np.ndarray              # (R, p) held-out R^2 on each re-split's test cases
    mse: np.ndarray             # (R, p)
    importance: np.ndarray      # (R, p) ||theta_k||, each in its own share space
    ridge: np.ndarray           # (R,) GCV alpha of each re-split's decoder
    squared_error: np.ndarray   # (R, n_test, p) float32, scaled units
    test_case_id: np.ndarray    # (R, n_test)
    weights: np.ndarray         # (R, d, h) the shares
    biases: np.ndarray          # (R, h)
    scale: float                # the total-variance factor applied to the embeddings
    reused_reference: bool      # decoded through the reference's shares (exact map)
    decoders: list = field(default_factory=list)   # lens.decoder.Decoder per re-split


def decode_protocol(proto: Protocol, Xs: np.ndarray, R: np.ndarray, weights: np.ndarray,
                    biases: np.ndarray, keep_decoders: bool = True) -> dict:
    """Decoders of every re-split given the shares: Z = act(Xs W_r + b_r), ridge alpha by
    GCV on the decoder cases, R^2 on the test cases. Xs, R in proto.case_id order."""

    Rn = proto.n_resplits
    p = R.shape[1]
    n_t = proto.sizes[2]
    out = {"r2": np.empty((Rn, p)), "mse": np.empty((Rn, p)), "importance": np.empty((Rn, p)),
           "ridge": np.empty(Rn), "squared_error": np.empty((Rn, n_t, p), dtype=np.float32),
           "test_case_id": np.empty((Rn, n_t), dtype=object), "decoders": []}
    for r in range(Rn):
        _, di, ti = proto.parts(r)
        W, b = np.asarray(weights[r], np.float64), np.asarray(biases[r], np.float64)
        Zd = activate(Xs[di] @ W + b, proto.activation)
        Zt = activate(Xs[ti] @ W + b, proto.activation)
        alpha, _, dec = ridge_gcv(Zd, R[di], intercept=True)
        pred = dec.predict(Zt)
        err = (pred - R[ti]) ** 2
        out["r2"][r] = r2_score(pred, R[ti])
        out["mse"][r] = err.mean(axis=0)
        out["importance"][r] = importance(dec.theta)
        out["ridge"][r] = alpha
        out["squared_error"][r] = err
        out["test_case_id"][r] = proto.case_id[ti]
        if keep_decoders:
            out["decoders"].append((dec, di, ti, Zd, Zt, pred))
    return out


def same_information(X: np.ndarray, X_ref: np.ndarray) -> str | None:
    """'identity' when X equals X_ref, 'exact-affine' when it is an exact invertible affine
    map of it on these cases (lens.align.exact_affine_map), else None."""

    X = np.asarray(X, dtype=np.float64)
    X_ref = np.asarray(X_ref, dtype=np.float64)
    if X.shape == X_ref.shape and np.array_equal(X, X_ref):
        return "identity"
    if exact_affine_map(X - X.mean(axis=0), X_ref - X_ref.mean(axis=0)) is not None:
        return "exact-affine"
    return None


# ---------------------------------------------------------------- table-level steps

POOL_SPLITS = ("train", "test")   # the cases re-split; `val` stays for the lambda sweep


def protocol_of(share) -> Protocol:
    """The Protocol a symmetric ShareModel records."""
    rs = share.resplit
    if rs is None:
        raise RadlensError("the share model holds no re-split protocol (not fitted with "
                           "method 'symmetric')")
    epochs, lr, l1, l2, seed, mean_red = (float(v) for v in rs["settings"])
    return Protocol(case_id=np.asarray(rs["case_id"], dtype=object),
                    assignment=np.asarray(rs["assignment"], dtype=np.int8),
                    hidden=share.hidden, activation=share.activation, l1=l1, l2=l2,
                    epochs=int(epochs), lr=lr, seed=int(seed),
                    reduction="mean" if mean_red else "sum")


def _pool(j, scaler, keep, pool_splits):
    """Positions (in j) of the pooled cases sorted by case id, their scaled radiomics, and
    the positions left out for non-finite radiomics."""
    mask = np.isin(j.split.astype(str), list(pool_splits))
    idx = np.flatnonzero(mask)
    Rp = scaler.transform(j.radiomics(idx, keep), out=True)
    ok = np.isfinite(Rp).all(axis=1)
    bad = idx[~ok]
    idx, Rp = idx[ok], Rp[ok]
    order = np.argsort(np.asarray([str(c) for c in j.case_id[idx]], dtype=object), kind="stable")
    return idx[order], Rp[order], bad


def fit_share_symmetric(emb, rad, hidden: int = 256, l1: float = 1e-6, l2: float = 1e-5,
                        grid=None, epochs: int | None = None, lr: float | None = None,
                        activation: str = "relu", seed: int = 0, device: str = "cpu",
                        allow_missing: bool = False, progress=None, warn=None,
                        reduction: str = "mean", n_resplits: int = N_RESPLITS,
                        share_fraction: float | None = None,
                        test_fraction: float | None = None, scale: str = "zscore"):
    """fit-share of the symmetric lens: the protocol (re-splits, share settings), the
    scaler, and the reference's own shares (decode reuses them for the reference itself
    and for exact affine maps of it). With a grid, (l1, l2) is selected on the `val`
    reconstruction of shares fitted as every re-split's are (full batch, `epochs`, `lr`) on
    re-split 0's share cases, all grid points as one batched model (the paper's sweep)."""

    warn = warn or (lambda m: None)
    epochs = EPOCHS if epochs is None else int(epochs)
    lr = LR if lr is None else float(lr)
    share_fraction = SHARE_FRACTION if share_fraction is None else float(share_fraction)
    test_fraction = TEST_FRACTION if test_fraction is None else float(test_fraction)
    j = join(emb, rad, allow_missing)
    _said_missing(j, warn)
    tr = require_split(j, "train", "fitting share", minimum=2)
    scaler = fit_scaler(j.radiomics(tr), j.columns, scale)
    if not scaler.columns:
        raise RadlensError(f"{rad.path}: every radiomic column is constant or non-finite on train")
    pos = {c: k for k, c in enumerate(j.columns)}
    keep = np.array([pos[c] for c in scaler.columns])
    idx, Rp, bad = _pool(j, scaler, keep, POOL_SPLITS)
    if len(bad):
        warn(f"{len(bad)} case(s) with non-finite radiomics left out of the re-splits: "
             f"{', '.join(map(str, j.case_id[bad][:5]))}")
    ids, assignment = make_resplits(j.case_id[idx], n_resplits, seed, share_fraction, test_fraction)
    hidden_rule = hidden is None
    if hidden_rule:   # the small-sample rule (lens/power.py), on each re-split's decoder cases

        hidden = recommended_hidden(int((assignment[0] == 1).sum()))
    Xp = np.asarray(j.X[idx], dtype=np.float64)
    tv = total_variance(Xp)
    Xs, _ = standardise(Xp, tv)
    grid = list(grid) if grid is not None else [(l1, l2)]
    sweep = None
    if len(grid) > 1:
        va = j.split == "val"
        if not va.any():
            raise RadlensError("the (l1, l2) grid is selected on the `val` split, but there are "
                               "no val cases")
        Rv = scaler.transform(j.radiomics(np.flatnonzero(va), keep), out=True)
        fin = np.isfinite(Rv).all(axis=1)
        Xv = (np.asarray(j.X[va][fin], np.float64) - Xp.mean(axis=0))
        s_idx = np.flatnonzero(assignment[0] == 0)
        fit = train_share(Xs[s_idx], Rp[s_idx], Xv, Rv[fin], grid=grid, hidden=hidden,
                          activation=activation, epochs=epochs, lr=lr,
                          batch_size=0, seed=seed, device=device,
                          reduction=reduction)
        l1, l2 = grid[fit.best]
        sweep = {"l1": np.array([g[0] for g in grid]), "l2": np.array([g[1] for g in grid]),
                 "val_l1": fit.val_l1, "train_l1": fit.train_l1, "train_loss": fit.train_loss,
                 "selected": np.arange(len(grid)) == fit.best}
    proto = Protocol(case_id=ids, assignment=assignment, hidden=hidden, activation=activation,
                     l1=float(l1), l2=float(l2), epochs=epochs, lr=lr, seed=int(seed),
                     reduction=reduction)
    W, b = fit_protocol_shares(proto, Xs, Rp, device=device, progress=progress)
    n_s, n_d, n_t = proto.sizes
    meta = {k: np.asarray(v, dtype=object)[keep] for k, v in j.meta.items()}
    model = ShareModel(weight=W[0], bias=b[0], activation=activation,
                       embedding_columns=list(emb.columns), scaler=scaler, column_meta=meta,
                       params={"l1": float(l1), "l2": float(l2), "seed": int(seed),
                               "n_train": n_s, "n_val": int((j.split == "val").sum()),
                               "n_resplits": int(n_resplits), "share_fraction": share_fraction,
                               "test_fraction": test_fraction, "n_share": n_s,
                               "n_decoder_train": n_d, "n_test": n_t,
                               "resplit_epochs": epochs, "resplit_lr": lr,
                               "reduction": reduction, "pool_splits": list(POOL_SPLITS),
                               "hidden": int(hidden), "hidden_from_rule": bool(hidden_rule)},
                       sweep=sweep, method="symmetric",
                       embedding_params=embedding_params(emb.attrs))
    model.reference_case_id = np.asarray(j.case_id, dtype=object)
    model.reference_X = np.asarray(j.X, dtype=np.float64)
    model.resplit = {"case_id": ids, "assignment": assignment, "weight": W, "bias": b,
                     "total_variance": np.array([tv]),
                     "settings": np.array([epochs, lr, float(l1), float(l2), int(seed),
                                           1.0 if reduction == "mean" else 0.0])}
    return model


def protocol_inputs(share, proto: Protocol, emb, rad, allow_missing: bool = False, warn=None):
    """(X, R): a checkpoint's embeddings and the share's scaled radiomic columns on the
    protocol's re-split cases, in proto.case_id order (what every re-split reads), with
    errors naming the file that lacks a column or a case or holds non-finite radiomics."""
    warn = warn or (lambda m: None)
    j = join(emb, rad, allow_missing)
    _said_missing(j, warn)
    pos = {c: k for k, c in enumerate(j.columns)}
    missing = [c for c in share.columns if c not in pos]
    if missing:
        raise RadlensError(f"{rad.path}: lacks {len(missing)} radiomic column(s) of the share "
                           f"model: {', '.join(missing[:3])}")
    keep = np.array([pos[c] for c in share.columns])
    where = {str(c): k for k, c in enumerate(j.case_id)}
    absent = [c for c in proto.case_id if str(c) not in where]
    if absent:
        raise RadlensError(f"{emb.path}: {len(absent)} of the share model's re-split cases are "
                           f"missing ({', '.join(map(str, absent[:3]))}); the symmetric lens "
                           f"reads every checkpoint on the same cases")
    rows = np.array([where[str(c)] for c in proto.case_id])
    R = share.scaler.transform(j.radiomics(rows, keep), out=True)
    if not np.isfinite(R).all():
        bad_cols = [share.columns[k] for k in np.flatnonzero(~np.isfinite(R).all(axis=0))]
        bad_rows = proto.case_id[~np.isfinite(R).all(axis=1)]
        raise RadlensError(f"{rad.path}: non-finite radiomics in the share model's re-split cases "
                           f"({', '.join(map(str, bad_rows[:3]))}{' ...' if len(bad_rows) > 3 else ''}), "
                           f"column(s) {', '.join(bad_cols[:3])}"
                           + (f" (+{len(bad_cols) - 3} more)" if len(bad_cols) > 3 else "")
                           + "; decode with the radiomics table fit-share used")
    return np.asarray(j.X[rows], dtype=np.float64), R


def decode_symmetric(share, emb, rad, allow_missing: bool = False, warn=None,
                     allow_different_preprocessing: bool = False, device: str = "cpu",
                     progress=None, eval_split: str = "test"):
    """decode of the symmetric lens: this checkpoint's own shares on the protocol's
    re-splits (or the reference's, when the embeddings carry exactly its information),
    its own GCV ridge alpha and decoder per re-split, R^2 on each test part.
    Returns a ResplitDecodeResult (re-split 0 as the main decoder, for the per-case views)."""

    warn = warn or (lambda m: None)
    if eval_split != "test":
        raise RadlensError("the symmetric lens re-splits the train and test cases itself; "
                           "eval_split other than 'test' does not apply")
    proto = protocol_of(share)
    emb_params = embedding_params(emb.attrs)
    require_same_preprocessing(share.embedding_params, emb_params,
                               "the share model's pre-trained embeddings", str(emb.path),
                               allow_different_preprocessing, warn)
    X, R = protocol_inputs(share, proto, emb, rad, allow_missing, warn)
    ref_pos = {str(c): k for k, c in enumerate(share.reference_case_id)}
    Xref = share.reference_X[[ref_pos[str(c)] for c in proto.case_id]]
    info = same_information(X, Xref)
    tv = float(share.resplit["total_variance"][0])
    input_map = None
    if info is not None:
        Xs, scale = standardise(Xref, tv)
        W, b = share.resplit["weight"], share.resplit["bias"]
        if info != "identity":
            warn(f"{emb.path}: an exact invertible affine map of the share model's pre-trained "
                 f"embeddings (the same information); decoded through the reference's shares")
            # this checkpoint's centred embeddings -> the reference's standardised ones
            input_map = exact_affine_map(X - X.mean(axis=0), Xref - Xref.mean(axis=0)) * scale
    else:
        Xs, scale = standardise(X, tv)
        W, b = fit_protocol_shares(proto, Xs, R, device=device, progress=progress)
    out = decode_protocol(proto, Xs, R, W, b)
    dec, di, ti, Zd, Zt, pred = out["decoders"][0]
    meta = {k: np.asarray(v, dtype=object) for k, v in share.column_meta.items()} or \
        column_meta(share.columns)
    res = ResplitDecodeResult(
        share_hash=share.share_hash, columns=list(share.columns), column_meta=meta,
        decoder=dec, eval_split="test", train_case_id=proto.case_id[di], Z_train=Zd,
        R_train=R[di], eval_case_id=proto.case_id[ti], Z_eval=Zt, R_eval=R[ti],
        prediction=pred, r2=out["r2"][0], mse=out["mse"][0], method="symmetric",
        embedding_params=emb_params, path=str(emb.path))
    res.resplit = {k: out[k] for k in ("r2", "mse", "importance", "ridge", "squared_error",
                                       "test_case_id")}
    res.same_information = info or "no"
    decs = [d[0] for d in out["decoders"]]
    res.readout = ResplitReadout(center=X.mean(axis=0), scale=float(scale), input_map=input_map,
                                 weight=np.asarray(W), bias=np.asarray(b), activation=proto.activation,
                                 theta=np.stack([d.theta for d in decs]),
                                 theta_bias=np.stack([d.bias for d in decs]))
    res.embedding_scale = scale
    res.protocol_hash = proto.digest()
    res.sizes = proto.sizes
    # the small-sample verdict (lens/power.py) on re-split 0's decoder, as decode gives it
    dg = dec.diagnostics
    res.power = assess(len(di), Zd.shape[1], n_eval=len(ti), rank=dg["effective_rank"], dof=dg.get("dof"),
                       alpha=dec.ridge, constant=int((np.ptp(Zd, axis=0) == 0).sum()) if len(Zd) else 0)
    if res.power.underpowered:
        warn(f"{res.power.headline()} (the rule: docs/validity.md, small cohorts)")
    return res


@dataclass
class ResplitDecodeResult(DecodeResult):
    """A DecodeResult (re-split 0, for the per-case views) plus every re-split's arrays."""

    resplit: dict = field(default_factory=dict)
    same_information: str = "no"
    embedding_scale: float = 1.0
    protocol_hash: str = ""
    sizes: tuple = (0, 0, 0)
    readout: ResplitReadout | None = None

    @property
    def attrs(self) -> dict:
        n_s, n_d, n_t = self.sizes
        return {**super().attrs, "n_resplits": int(self.resplit["r2"].shape[0]), "n_share": n_s,
                "n_decoder_train": n_d, "n_test": n_t, "protocol_hash": self.protocol_hash,
                "embedding_scale": float(self.embedding_scale),
                "same_information": self.same_information}

    def to_record(self) -> dict:
        """DecodeResult.to_record plus every re-split's R^2, MSE, importance and alpha
        (float64) and per-case test errors (float32) under `resplit/`."""
        rec = super().to_record()
        rs = self.resplit
        rec["datasets"].update({f"resplit/{k}": np.asarray(rs[k], np.float64)
                                for k in ("r2", "mse", "importance", "ridge")})
        rec["datasets"]["resplit/squared_error"] = np.asarray(rs["squared_error"], np.float32)
        rec["datasets"]["resplit/test_case_id"] = np.asarray(rs["test_case_id"], dtype=object)
        if self.readout is not None:   # what saliency's concept maps differentiate through
            rec["datasets"].update(self.readout.to_datasets())
        return rec

    def arrays(self, names) -> dict:
        names = tuple(names)
        out = super().arrays([n for n in names if not n.startswith("resplit/")])
        out.update({n: self.resplit[n.split("/", 1)[1]] for n in names if n.startswith("resplit/")})
        return out
