"""Radiomic concept maps: where in the input the encoder's decoded radiomic feature is read.

The decoded feature is computed as `decode` computes it from the encoder's output at the
recorded layer and pooling (the embedding):

- the symmetric lens (the default): per re-split r, the embedding centred and scaled as
  decode scaled this checkpoint's, the checkpoint's own share r and its ridge decoder r
  (all stored in DEC.h5 by decode); the decoded feature is the MEAN over the R re-splits'
  predictions -- the lens's statistics average over re-splits, and the mean's gradient is
  the mean of the re-splits' gradients, so the map is the re-splits' maps averaged;
- calibrated-0.2 and paper: share's linear layer (with decode's alignment to the
  pre-trained basis folded in) and non-linearity, then the decoder's theta and bias.

`readout_layers` builds that map from what SHARE.h5 and DEC.h5 store (and, for an aligned
decoder, the embeddings decode was given, to refit its alignment); it is the one place to
change when the lens pipeline changes. Given the embeddings, the rebuilt lens is checked
against the Z that DEC.h5 stores, so a map is never drawn through a lens other than the one
that decoded.

A concept map is the signed attribution summed over channels: integrated gradients
(Sundararajan et al. 2017, Captum; baseline 0, the normalised mean) or gradient x input
(Captum's InputXGradient, its first-order version). Positive values are voxels that raise
the decoded feature; the mass measures (mass_in_mask, the planted test) count the positive
part, as the CAMs' ReLU does. Absolute values spread: a decoder that is accurate on the
cohort is invariant to the other regions only along the directions the cohort varies in,
not voxel by voxel (docs/saliency.md gives the numbers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.io.files import input_path
from radlens_cli.lens.align import fit_alignment
from radlens_cli.lens.resplit import R2_CLIP, READOUT_DATASETS, ResplitReadout
from radlens_cli.lens.share import activate
from radlens_cli.lens.steps import distinct_columns
from radlens_cli.saliency.methods import captum

CONCEPT_METHODS = ("integrated-gradients", "gradient")


class _TorchActivations(dict):
    """lens.share's activations on torch tensors (torch is imported on first use)."""

    def __missing__(self, name):
        import torch

        fn = {"relu": torch.relu, "tanh": torch.tanh, "gelu": torch.nn.functional.gelu}[name]
        self[name] = fn
        return fn


TORCH_ACTIVATIONS = _TorchActivations()


@dataclass
class Readout:
    """Embedding -> decoded features: act(E[:, keep] W + b) theta^T + bias (float64)."""

    weight: np.ndarray
    bias: np.ndarray
    activation: str
    theta: np.ndarray
    dec_bias: np.ndarray
    columns: list
    keep: np.ndarray | None = None
    alignment: str = "none"

    def numpy(self, E: np.ndarray) -> np.ndarray:
        E = np.asarray(E, dtype=np.float64)
        if self.keep is not None:
            E = E[:, self.keep]
        return activate(E @ self.weight + self.bias, self.activation)

    def torch(self, E):
        """The same map on a torch (B, d) tensor (float64), differentiable."""
        import torch

        E = E.double()
        if self.keep is not None:
            E = E[:, torch.as_tensor(self.keep, device=E.device)]
        a = E @ torch.as_tensor(self.weight, device=E.device) + torch.as_tensor(self.bias, device=E.device)
        z = TORCH_ACTIVATIONS[self.activation](a)
        return z @ torch.as_tensor(self.theta, device=E.device).T + torch.as_tensor(self.dec_bias, device=E.device)


def readout_layers(share, decoder, columns: list, embeddings=None) -> Readout:
    """The decoded features `columns` as a function of the embedding, from SHARE.h5 (`share`, a
    ShareModel), DEC.h5 (`decoder`, a DecoderFile with bulk train/Z loaded) and, for an
    aligned decoder, `embeddings` (the CaseTable decode was given)."""
    if decoder.share_hash != share.share_hash:
        raise ParameterError("{decoder} was not decoded through {share} (share_hash differs)", "decoder", "share",
                             exit_code=EXIT_DATA)
    method = str(decoder.attrs.get("method", "calibrated"))
    pos = {c: k for k, c in enumerate(decoder.columns)}
    missing = [c for c in columns if c not in pos]
    if missing:
        raise ParameterError(f"{{feature}} {', '.join(missing[:3])}: not a column of the decoder "
                             f"({len(decoder.columns)} columns, e.g. {', '.join(decoder.columns[:3])})",
                             "feature", exit_code=EXIT_DATA)
    idx = [pos[c] for c in columns]
    if method == "symmetric":
        return symmetric_readout(share, decoder, columns, idx, embeddings)
    W, b = np.asarray(share.weight, np.float64), np.asarray(share.bias, np.float64)
    kind = str(decoder.attrs.get("alignment", "none"))
    keep = None
    if kind != "none":
        if embeddings is None:
            raise ParameterError(f"{decoder.path} was decoded with alignment ({kind}); give the embeddings "
                                 f"decode read ({{embeddings}}) to rebuild it", "embeddings")
        X = np.asarray(embeddings.values, dtype=np.float64)
        ids = [str(c) for c in embeddings.case_id]
        keep = distinct_columns(X)
        pos_ref = {c: k for k, c in enumerate(map(str, share.reference_case_id))}
        both = np.array([k for k, c in enumerate(ids) if c in pos_ref], dtype=np.int64)
        if len(both) < 2:
            raise RadlensError(f"{embeddings.path}: fewer than 2 cases in common with the share model")
        al = fit_alignment(X[both][:, keep], share.reference_X[[pos_ref[ids[k]] for k in both]],
                           kind.replace("procrustes-", ""))
        W, b = al.compose(W, b)
        if len(keep) == X.shape[1]:
            keep = None
    out = Readout(W, b, share.activation, np.asarray(decoder.theta, np.float64)[idx],
                  np.asarray(decoder.bias, np.float64)[idx], list(columns), keep, kind)
    if embeddings is not None and "train/Z" in decoder.bulk:
        # the check that this is decode's lens: its Z on the decoder's own train cases
        rows = {str(c): k for k, c in enumerate(embeddings.case_id)}
        have = [k for k, c in enumerate(map(str, decoder.train_case_id)) if c in rows]
        if have:
            Z = out.numpy(np.asarray(embeddings.values, np.float64)[[rows[str(decoder.train_case_id[k])]
                                                                     for k in have]])
            ref = decoder.bulk["train/Z"][have]
            err = float(np.max(np.abs(Z - ref))) / max(1e-12, float(np.max(np.abs(ref))))
            if err > 1e-3:
                raise RadlensError(f"{decoder.path}: the lens rebuilt from {{share}} and the embeddings does not "
                                   f"reproduce the decoder's stored Z (relative error {err:.2g}); give the "
                                   f"embeddings decode read".replace("{share}", "the share model"))
    return out


@dataclass
class SymmetricReadout:
    """Embedding -> decoded features of the symmetric lens: the mean over the R re-splits of
    each re-split's prediction (`lens`, a lens.resplit.ResplitReadout restricted to `columns`:
    what decode fitted for this checkpoint -- centring, total-variance scale, the re-split's
    own share and ridge decoder)."""

    lens: ResplitReadout
    columns: list
    alignment: str = "none"
    _cache: dict = field(default_factory=dict, repr=False)

    def numpy(self, E: np.ndarray) -> np.ndarray:
        return self.lens.predict(E).mean(axis=0)

    def _tensors(self, device):
        import torch

        key = str(device)
        if key not in self._cache:
            L = self.lens
            self._cache[key] = {k: None if v is None else torch.as_tensor(np.asarray(v, np.float64), device=device)
                                for k, v in (("center", L.center), ("input_map", L.input_map), ("W", L.weight),
                                             ("b", L.bias), ("theta", L.theta), ("tb", L.theta_bias))}
        return self._cache[key]

    def torch(self, E):
        """The same map on a torch (B, d) tensor (float64), differentiable."""
        import torch

        t = self._tensors(E.device)
        Xs = E.double() - t["center"]
        Xs = Xs @ t["input_map"] if t["input_map"] is not None else Xs * float(self.lens.scale)
        Z = TORCH_ACTIVATIONS[self.lens.activation](torch.einsum("nd,rdh->rnh", Xs, t["W"]) + t["b"][:, None, :])
        pred = torch.einsum("rnh,rkh->rnk", Z, t["theta"]) + t["tb"][:, None, :]
        return pred.mean(dim=0)


def symmetric_readout(share, decoder, columns: list, idx: list, embeddings=None) -> SymmetricReadout:
    """The symmetric lens's readout of `columns` (positions `idx` in the decoder) from what
    DEC.h5 stores: decode writes every re-split's share and decoder and the centre and scale
    of this checkpoint's embeddings. With `embeddings` (the table decode read), checked
    against the Z decode stored for re-split 0's decoder cases."""
    try:
        arrays = decoder.arrays(READOUT_DATASETS)
    except (KeyError, RadlensError):
        raise RadlensError(f"{decoder.path}: a decoder of the symmetric lens without its re-splits' shares and "
                           f"decoders (written by an older decode); run this radlens's decode again for concept maps", exit_code=EXIT_DATA) from None
    try:
        arrays.update(decoder.arrays(("resplit/input_map",)))
    except (KeyError, RadlensError):
        pass  # only an exact affine map of the reference has one
    full = ResplitReadout.from_arrays(arrays, float(decoder.attrs.get("embedding_scale", 1.0)), share.activation)
    if embeddings is not None:
        rows = {str(c): k for k, c in enumerate(embeddings.case_id)}
        tr = [str(c) for c in decoder.train_case_id]
        have = [k for k, c in enumerate(tr) if c in rows]
        if have:
            E = np.asarray(embeddings.values, np.float64)[[rows[tr[k]] for k in have]]
            Z = activate(full.standardised(E) @ np.asarray(full.weight[0], np.float64)
                         + np.asarray(full.bias[0], np.float64), full.activation)
            ref = decoder.arrays(("train/Z",))["train/Z"][have]
            err = float(np.max(np.abs(Z - ref))) / max(1e-12, float(np.max(np.abs(ref))))
            if err > 1e-3:
                raise RadlensError(f"{decoder.path}: the lens rebuilt from the decoder and the embeddings does not "
                                   f"reproduce the decoder's stored Z (relative error {err:.2g}); give the "
                                   f"embeddings decode read")
    lens = ResplitReadout(full.center, full.scale, full.weight, full.bias, full.theta[:, idx],
                          full.theta_bias[:, idx], full.activation, full.input_map)
    return SymmetricReadout(lens, list(columns))


class ConceptMaps:
    """Concept maps of `readout`'s columns for the encoder `embedder` (an infer.Embedder)."""

    def __init__(self, embedder, readout: Readout, method: str = "integrated-gradients", steps: int = 16,
                 device=None):
        if method not in CONCEPT_METHODS:
            raise ParameterError(f"{{concept_method}} must be one of {', '.join(CONCEPT_METHODS)}", "concept_method")
        self.embedder, self.readout, self.method, self.steps = embedder, readout, method, int(steps)
        self.device = device if device is not None else embedder.device

    def decoded(self, x):
        """(B, C, *sp) -> (B, p) decoded features (float64), differentiable."""
        return self.readout.torch(self.embedder._forward(x))

    def maps(self, volume: np.ndarray) -> dict:
        """{column: (map (*sp), decoded value, numpy scorer for deletion)} for one case."""
        import torch
        captum()
        from captum.attr import InputXGradient, IntegratedGradients

        x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None].to(self.device)
        with torch.no_grad():
            values = self.decoded(x)[0].cpu().numpy()
        out = {}
        for j, col in enumerate(self.readout.columns):
            def f(t, j=j):
                return self.decoded(t)[:, j]
            if self.method == "gradient":
                attr = InputXGradient(f).attribute(x.clone().requires_grad_(True))
            else:
                attr = IntegratedGradients(f).attribute(x, baselines=0.0, n_steps=self.steps,
                                                        internal_batch_size=self.steps)
            cmap = attr[0].detach().double().sum(0).cpu().numpy()

            def scores(batch, f=f):
                with torch.no_grad():
                    return f(torch.from_numpy(batch.astype(np.float32)).to(self.device)).cpu().numpy()
            out[col] = (cmap, float(values[j]), scores)
        return out


def decoder_r2(decoder, columns: list) -> dict:
    """{column: how well the decoder reads it}: the held-out R^2 on the eval split; for the
    symmetric lens the mean over the re-splits of the held-out R^2 clipped at 0, as its
    statistics read it."""
    if decoder.resplit is not None:
        r2 = np.clip(np.asarray(decoder.resplit["r2"], np.float64), R2_CLIP, None).mean(axis=0)
    else:
        r2 = np.asarray(decoder.r2, dtype=np.float64)
    pos = {c: k for k, c in enumerate(decoder.columns)}
    return {c: float(r2[pos[c]]) for c in columns}


def top_changed(delta_path: str, n: int) -> list[str]:
    """The n most gained and n most lost columns of a compare table (DELTA.csv, by delta_r2)."""
    import pandas as pd

    df = pd.read_csv(input_path(delta_path, "compare table"))
    if "column" not in df.columns or "delta_r2" not in df.columns:
        raise ParameterError(f"{{compare}} {delta_path}: needs `column` and `delta_r2` columns (a `radlens "
                             f"compare` table)", "compare", exit_code=EXIT_DATA)
    if "checkpoint" in df.columns and df["checkpoint"].nunique() > 1:
        df = df[df["checkpoint"] == df["checkpoint"].iloc[0]]
    df = df[np.isfinite(df["delta_r2"].to_numpy(dtype=np.float64))]
    order = df.sort_values(["delta_r2", "column"], kind="stable")
    lost = list(order["column"].head(n))
    gained = list(order["column"].tail(n))[::-1]
    return list(dict.fromkeys(gained + lost))
