"""The shared non-linear projection Z = share(X) = act(X W + b) (paper Sect. 2.2, 3.5).

Training (paper eq. 5): f(X) = head(share(X)), one linear head over all modalities'
kept radiomic columns (equivalent to one Linear(h, n) per modality), loss

    L = data + l1 * ||W||_1 + l2 * ||W||_2^2,
    data = mean over cases and columns of |head(share(x)) - r|      (reduction "mean")
         = mean over cases of the sum over columns of |...|           (reduction "sum")

where ||W|| runs over the weights of share AND head (the paper's ||phi, theta||) and the
biases are not penalised (the usual convention; the paper does not say).
Reduction, and why "mean" is the default: the paper's lambdas (1e-7 .. 1e-3) were tuned
against some data term it does not spell out; PyTorch's L1Loss default is the per-element
mean, the most likely choice. With the sum over ~2,500 columns the strongest grid corner's
penalty is ~0.3 % of the data term and the sweep's 24 points ended within 1.4 % validation
L1 of each other on a planted cohort (selection picks noise); with the mean the same grid
spans ~0.02x to 7x of the data term. "sum" stays available. Validation and train scores
(val_l1, train_l1) use the same reduction as the loss.

The paper's lambda_1 grid lists 1e-6 twice (a typo); we use DESIGN's grid
l1 in {0, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5} x l2 in {0, 1e-5, 1e-4, 1e-3}.
The non-linearity is not named in the paper; ReLU by default.

The sweep trains all grid points at once: every weight has a leading grid dimension and
the summed loss gives each grid point exactly its own gradient (Adam is element-wise), so
it equals 24 separate fits from the same initialisation, in one batched model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.devices import resolve_device
from radlens_cli.errors import RadlensError, check_choice
from radlens_cli.lens.scaling import Scaler

ACTIVATIONS = ("relu", "gelu", "tanh")
L1_GRID = (0.0, 1e-7, 3e-7, 1e-6, 3e-6, 1e-5)
L2_GRID = (0.0, 1e-5, 1e-4, 1e-3)
DEFAULT_L1, DEFAULT_L2 = 1e-6, 1e-5
REDUCTIONS = ("mean", "sum")
METHODS = ("symmetric", "calibrated", "paper")
# "calibrated" is 0.2.0's calibrated lens (files record that name); users name it
# "calibrated-0.2" since 0.3.0, whose default is "symmetric" (lens/resplit.py)
METHOD_ALIASES = {"calibrated-0.2": "calibrated"}
DEFAULT_METHOD = "symmetric"


def method_name(method: str) -> str:
    """The method a user's name stands for (calibrated-0.2 -> calibrated); ValueError if none."""
    m = METHOD_ALIASES.get(method, method)
    if m not in METHODS:
        raise ValueError(f"unknown method {method!r} (choose symmetric, calibrated-0.2 or paper)")
    return m


def paper_grid() -> list[tuple[float, float]]:
    """The 6 x 4 (l1, l2) grid of the paper's sweep, l1 varying slowest."""
    return [(a, b) for a in L1_GRID for b in L2_GRID]


def activate(a: np.ndarray, activation: str) -> np.ndarray:
    """The share non-linearity in numpy (GELU is the exact erf form, as torch's default)."""
    if activation == "relu":
        return np.maximum(a, 0.0)
    if activation == "tanh":
        return np.tanh(a)
    if activation == "gelu":
        from scipy.special import erf

        return 0.5 * a * (1.0 + erf(a / np.sqrt(2.0)))
    raise ValueError(f"unknown activation {activation!r} (choose {', '.join(ACTIVATIONS)})")


@dataclass
class ShareModel:
    """Frozen share projection plus what is needed to use it on new data."""

    weight: np.ndarray                      # (d, h) float32
    bias: np.ndarray                        # (h,) float32
    activation: str
    embedding_columns: list[str]
    scaler: Scaler
    column_meta: dict = field(default_factory=dict)   # kept columns' metadata arrays
    params: dict = field(default_factory=dict)
    sweep: dict | None = None
    attrs: dict = field(default_factory=dict)              # root attributes when loaded
    method: str = "calibrated"        # calibrated (aligned, intercept, shared ridge) or paper
    ridge: float = 0.0                # the ridge alpha every decoder of this share uses
    reference_case_id: np.ndarray | None = None   # every case, for alignment
    reference_X: np.ndarray | None = None         # their pre-trained embeddings (float64)
    embedding_params: dict = field(default_factory=dict)  # how EMB_PRE was made (embed)
    extra: list = field(default_factory=list)  # further share seeds: (seed, weight, bias, ridge)
    share_case_id: np.ndarray | None = None  # the train cases share was fitted on (None: all);
    # decoders are fitted on the other train cases, so no decoder sees the share's own fit
    resplit: dict | None = None   # method "symmetric": the re-split protocol and the
    # reference's own shares (lens/resplit.py): case_id, assignment, weight, bias, total_variance,
    # settings ([epochs, lr, l1, l2, seed, mean-reduction])

    def seed_models(self) -> list[tuple[int, np.ndarray, np.ndarray, float]]:
        """(seed, weight, bias, ridge) of every share initialisation, the main one first."""
        return [(int(self.params.get("seed", 0)), self.weight, self.bias, self.ridge), *self.extra]

    @property
    def hidden(self) -> int:
        return int(self.weight.shape[1])

    @property
    def embedding_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def columns(self) -> list[str]:
        return self.scaler.columns

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Z = act(X W + b), float64, (n, h)."""
        X = np.asarray(X, dtype=np.float64)
        return activate(X @ np.asarray(self.weight, np.float64)
                        + np.asarray(self.bias, np.float64), self.activation)

    def to_record(self) -> dict:
        """The model as plain data for SHARE.h5 (io.formats.share writes it): `datasets`,
        `groups` (sweep, seeds) and `attrs` (its own attributes, share_hash among them).
        The temporary heads are not kept."""
        sc = self.scaler
        datasets = {
            "weight": np.asarray(self.weight, np.float32),
            "bias": np.asarray(self.bias, np.float32),
            "embedding_columns": np.array(self.embedding_columns, dtype=object),
            "columns": np.array(sc.columns, dtype=object),
            "scale_offset": np.asarray(sc.offset, np.float64),
            "scale_factor": np.asarray(sc.factor, np.float64),
            "dropped_columns": np.array([c for c, _ in sc.dropped], dtype=object),
            "dropped_reasons": np.array([r for _, r in sc.dropped], dtype=object),
        }
        for k, v in self.column_meta.items():
            datasets[f"column_{k}"] = np.asarray(v, dtype=object)
        if self.share_case_id is not None:
            datasets["share_case_id"] = np.asarray(self.share_case_id, dtype=object)
        if self.reference_X is not None:
            datasets["reference_case_id"] = np.asarray(self.reference_case_id, dtype=object)
            datasets["reference_embeddings"] = np.asarray(self.reference_X, np.float64)
        groups = {}
        if self.sweep:
            groups["sweep"] = {k: np.asarray(v) for k, v in self.sweep.items()}
        if self.extra:
            groups["seeds"] = {"seed": np.array([e[0] for e in self.extra], dtype=np.int64),
                               "weight": np.stack([np.asarray(e[1], np.float32) for e in self.extra]),
                               "bias": np.stack([np.asarray(e[2], np.float32) for e in self.extra]),
                               "ridge": np.array([e[3] for e in self.extra], dtype=np.float64)}
        if self.resplit is not None:   # the symmetric lens's protocol and reference shares
            groups["resplit"] = {k: (np.asarray(v, dtype=object) if k == "case_id" else np.asarray(v))
                                 for k, v in self.resplit.items()}
        attrs = {"activation": self.activation, "scale": sc.kind, "hidden": self.hidden,
                 "embedding_dim": self.embedding_dim, "share_hash": self.share_hash,
                 "method": self.method, "ridge": float(self.ridge),
                 "embedding_params": json.dumps(self.embedding_params, sort_keys=True)}
        return {"datasets": datasets, "groups": groups, "attrs": attrs}

    @classmethod
    def from_record(cls, record) -> "ShareModel":
        """The model of a SHARE.h5 read back (io.formats.share.load_share: `datasets` with
        strings decoded, `groups`, `attrs`, `path`); the stored share_hash must match."""
        f, attrs, shown = record["datasets"], record["attrs"], record.get("path", "share model")
        try:
            strs = {k: [str(x) for x in f[k]] for k in
                    ("embedding_columns", "columns", "dropped_columns", "dropped_reasons")}
            meta = {k[len("column_"):]: v for k, v in f.items()
                    if k.startswith("column_") and k != "columns"}
            scaler = Scaler(kind=str(attrs["scale"]), columns=strs["columns"],
                            offset=f["scale_offset"], factor=f["scale_factor"],
                            dropped=list(zip(strs["dropped_columns"], strs["dropped_reasons"])))
            model = cls(weight=f["weight"], bias=f["bias"], activation=str(attrs["activation"]),
                        embedding_columns=strs["embedding_columns"], scaler=scaler,
                        column_meta=meta, sweep=record["groups"].get("sweep"),
                        params=json.loads(attrs.get("params", "{}")),
                        method=str(attrs.get("method", "paper")),
                        ridge=float(attrs.get("ridge", 0.0)),
                        embedding_params=json.loads(attrs.get("embedding_params", "{}")))
            if "share_case_id" in f:
                model.share_case_id = f["share_case_id"]
            g = record["groups"].get("seeds")
            if g is not None:
                model.extra = [(int(a), w, b, float(r)) for a, w, b, r in
                               zip(g["seed"], g["weight"], g["bias"], g["ridge"])]
            if record["groups"].get("resplit") is not None:
                model.resplit = dict(record["groups"]["resplit"])
            if "reference_embeddings" in f:
                model.reference_case_id = f["reference_case_id"]
                model.reference_X = f["reference_embeddings"]
        except KeyError as e:
            raise RadlensError(f"{shown}: share model lacks {e} (not written by fit-share?)") from None
        model.attrs = attrs
        if attrs.get("share_hash") != model.share_hash:
            raise RadlensError(f"{shown}: share_hash does not match the stored weights "
                               f"(file modified or corrupt)")
        return model

    @property
    def share_hash(self) -> str:
        """sha256 over the weights, activation, embedding columns and scaling: the identity
        decoders carry so that compare refuses decoders of different share models."""
        h = hashlib.sha256()
        h.update(self.activation.encode())
        h.update(np.ascontiguousarray(self.weight, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.bias, dtype="<f4").tobytes())
        h.update("\n".join(self.embedding_columns).encode())
        h.update(self.scaler.kind.encode())
        h.update("\n".join(self.scaler.columns).encode())
        h.update(np.ascontiguousarray(self.scaler.offset, dtype="<f8").tobytes())
        h.update(np.ascontiguousarray(self.scaler.factor, dtype="<f8").tobytes())
        h.update(f"{self.method}|{self.ridge!r}".encode())
        for sd, w, b, r in self.extra:
            h.update(f"seed {sd} {r!r}".encode())
            h.update(np.ascontiguousarray(w, dtype="<f4").tobytes())
            h.update(np.ascontiguousarray(b, dtype="<f4").tobytes())
        if self.share_case_id is not None:
            h.update(("share cases\n" + "\n".join(map(str, self.share_case_id))).encode())
        if self.resplit is not None:
            rs = self.resplit
            h.update(("resplit\n" + "\n".join(map(str, rs["case_id"]))).encode())
            h.update(np.ascontiguousarray(rs["assignment"], dtype=np.int8).tobytes())
            h.update(np.ascontiguousarray(rs["weight"], dtype="<f4").tobytes())
            h.update(np.ascontiguousarray(rs["bias"], dtype="<f4").tobytes())
            h.update(np.ascontiguousarray(rs["total_variance"], dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(rs["settings"], dtype="<f8").tobytes())
        if self.reference_X is not None:
            h.update("\n".join(map(str, self.reference_case_id)).encode())
            h.update(np.ascontiguousarray(self.reference_X, dtype="<f8").tobytes())
        return h.hexdigest()


@dataclass
class ShareFit:
    """Result of training one or many (grid) share models."""

    grid: list[tuple[float, float]]
    weight: np.ndarray        # (G, d, h) float32
    bias: np.ndarray          # (G, h) float32
    train_loss: np.ndarray    # (G,) final penalised loss on the whole train split
    train_l1: np.ndarray      # (G,) final data term on train
    val_l1: np.ndarray        # (G,) data term on val (NaN without val cases)

    @property
    def best(self) -> int:
        """Grid index with the lowest validation reconstruction L1 (first on ties)."""
        score = self.val_l1 if np.isfinite(self.val_l1).all() else self.train_l1
        return int(np.argmin(score))


def _torch_act(activation: str):
    import torch

    return {"relu": torch.relu, "tanh": torch.tanh,
            "gelu": torch.nn.functional.gelu}[activation]


def train_share(X_train, R_train, X_val=None, R_val=None, grid=None, hidden: int = 256,
                activation: str = "relu", epochs: int = 200, lr: float = 1e-3,
                batch_size: int = 256, seed: int = 0, device: str = "cpu",
                progress=None, reduction: str = "mean") -> ShareFit:
    """Train share+head for every (l1, l2) in `grid` at once (Adam, L1 reconstruction).

    X: (n, d) embeddings; R: (n, p) scaled radiomics. batch_size <= 0 means full batch.
    All grid points start from the same seeded initialisation (torch.nn.Linear's
    default uniform +-1/sqrt(fan_in)) and see the same mini-batch order, so the grid
    compares penalties only. Deterministic on CPU for a given seed.
    """
    import torch

    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(reduction, REDUCTIONS, "loss_reduction")
    grid = list(grid or [(DEFAULT_L1, DEFAULT_L2)])
    device = str(resolve_device(device))  # radlens_cli.devices: the one resolver
    prev_det = torch.are_deterministic_algorithms_enabled()
    if device == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        return _train(torch, np.asarray(X_train, np.float32), np.asarray(R_train, np.float32),
                      None if X_val is None else np.asarray(X_val, np.float32),
                      None if R_val is None else np.asarray(R_val, np.float32),
                      grid, hidden, activation, epochs, lr, batch_size, seed, device, progress,
                      reduction)
    finally:
        torch.use_deterministic_algorithms(prev_det)


def l1_head_gradients(torch, A, W2, b2, R, N, activation: str):
    """Of G batched shares' mean-L1 data term, given the first layer's pre-activations A
    (G, n, h): (dL/dA, dL/dW2, dL/db2), the data term divided by N, written out by hand
    (tested against autograd); the sweep and the symmetric lens both back-propagate
    through it."""
    H = _torch_act(activation)(A)
    S = torch.baddbmm(b2[:, None, :], H, W2).sub_(R).sign_()           # dL/dP * N
    gW2 = torch.bmm(H.transpose(1, 2), S).div_(N)
    gb2 = S.sum(dim=1).div_(N)
    gH = torch.bmm(S, W2.transpose(1, 2)).div_(N)
    del S
    if activation == "relu":
        gA = gH.mul_(A > 0)
    elif activation == "tanh":
        gA = gH.mul_(1 - H * H)
    else:  # exact GELU: Phi(a) + a * phi(a)
        cdf = 0.5 * (1 + torch.erf(A / np.sqrt(2.0)))
        pdf = torch.exp(-0.5 * A * A) / np.sqrt(2 * np.pi)
        gA = gH.mul_(cdf + A * pdf)
    return gA, gW2, gb2


def batched_init(torch, gen, G: int, d: int, hidden: int, p: int, device):
    """(W1, b1, W2, b2) of G share models started alike, each layer uniform in
    +-1/sqrt(fan_in) as torch.nn.Linear, drawn from `gen`; shapes (G, d, h), (G, h),
    (G, h, p), (G, p), on `device`, requiring gradients."""
    def uniform(shape, fan_in):
        bound = 1.0 / np.sqrt(fan_in)
        return (torch.rand(shape, generator=gen, dtype=torch.float32) * 2 - 1) * bound

    init = [uniform((d, hidden), d), uniform((hidden,), d),
            uniform((hidden, p), hidden), uniform((p,), hidden)]
    return [t.unsqueeze(0).repeat(G, *([1] * t.dim())).to(device).requires_grad_() for t in init]


def _train(torch, X, R, Xv, Rv, grid, hidden, activation, epochs, lr, batch_size, seed,
           device, progress, reduction="mean") -> ShareFit:
    n, d = X.shape
    p = R.shape[1]
    G = len(grid)
    gen = torch.Generator().manual_seed(int(seed))
    W1, b1, W2, b2 = batched_init(torch, gen, G, d, hidden, p, device)
    l1 = torch.tensor([g[0] for g in grid], dtype=torch.float32, device=device)
    l2 = torch.tensor([g[1] for g in grid], dtype=torch.float32, device=device)
    act = _torch_act(activation)
    Xt = torch.from_numpy(X).to(device)
    Rt = torch.from_numpy(R).to(device)
    try:   # one fused kernel per step: the grid's Adam state is 24x the model
        opt = torch.optim.Adam([W1, b1, W2, b2], lr=lr, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - device without fused Adam
        opt = torch.optim.Adam([W1, b1, W2, b2], lr=lr)
    bs = n if batch_size is None or batch_size <= 0 or batch_size >= n else int(batch_size)

    def forward(xb):
        H = act(torch.einsum("nd,gdh->gnh", xb, W1) + b1[:, None, :])
        return torch.baddbmm(b2[:, None, :], H, W2)          # (G, n, p)

    def penalty():
        return (l1 * (W1.abs().sum((1, 2)) + W2.abs().sum((1, 2)))
                + l2 * (W1.square().sum((1, 2)) + W2.square().sum((1, 2))))

    params = (W1, b1, W2, b2)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen) if bs < n else torch.arange(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs].to(device)
            with torch.no_grad():
                grads = share_gradients(torch, Xt[idx], Rt[idx], *params, l1, l2, activation,
                                        reduction)
            for prm, g in zip(params, grads):
                prm.grad = g
            opt.step()
        if progress is not None:
            progress()

    def data_term(Xa, Ra):
        total = torch.zeros(G, dtype=torch.float64, device=device)
        chunk = max(1, int(2e7 // max(1, G * p)))      # bound (G, chunk, p) to ~80 MB
        for s in range(0, Xa.shape[0], chunk):
            err = (forward(Xa[s:s + chunk]) - Ra[s:s + chunk]).abs().sum(dim=2)
            total += err.sum(dim=1).double()
        per = Xa.shape[0] * (p if reduction == "mean" else 1)
        return (total / per).cpu().numpy()

    with torch.no_grad():
        train_l1 = data_term(Xt, Rt)
        pen = penalty().double().cpu().numpy()
        if Xv is not None and len(Xv):
            val_l1 = data_term(torch.from_numpy(Xv).to(device), torch.from_numpy(Rv).to(device))
        else:
            val_l1 = np.full(G, np.nan)
    return ShareFit(grid=grid, weight=W1.detach().cpu().numpy(), bias=b1.detach().cpu().numpy(),
                    train_loss=train_l1 + pen, train_l1=train_l1, val_l1=val_l1)


def share_gradients(torch, xb, rb, W1, b1, W2, b2, l1, l2, activation, reduction="sum"):
    """Gradients of sum_g [mean_b sum_p |head(share(x)) - r| + l1_g |W|_1 + l2_g |W|_2^2]
    w.r.t. (W1, b1, W2, b2), written out by hand (reduction "mean": the data term is
    also divided by the number of columns p).

    Same values as autograd on that loss (tested), but the (G, batch, p) error tensor is
    turned into its sign in place and the penalties' gradients are added in place: the
    grid's element-wise work is what dominates the batched sweep on CPU, and autograd
    would allocate and traverse several such tensors per step.
    """
    B = xb.shape[0]
    N = B * (rb.shape[1] if reduction == "mean" else 1)     # the data term's divisor
    A = torch.einsum("nd,gdh->gnh", xb, W1).add_(b1[:, None, :])       # (G, B, h)
    gA, gW2, gb2 = l1_head_gradients(torch, A, W2, b2, rb, N, activation)
    G, _, h = gA.shape
    gW1 = (xb.T @ gA.permute(1, 0, 2).reshape(B, G * h)).reshape(-1, G, h).permute(1, 0, 2)
    gW1 = gW1.contiguous()
    gb1 = gA.sum(dim=1)
    for W, gW in ((W1, gW1), (W2, gW2)):
        gW.add_(torch.sign(W).mul_(l1[:, None, None]))
        gW.addcmul_(W, (2 * l2)[:, None, None].expand_as(W))
    return gW1, gb1, gW2, gb2
