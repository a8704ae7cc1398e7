"""Aligning a checkpoint's embeddings to the pre-trained basis before the frozen share.

The paper feeds fine-tuned embeddings straight into share, a non-linear map fitted to the
pre-trained basis. Any change of basis (a rotation, a permutation of dimensions, a change
of scale or offset -- all of which keep every bit of information) then reads as lost
decodability: measured on planted cohorts, a pure rotation made mean delta_r2 about -0.2
and flagged most Table-1 groups. The calibrated lens therefore maps each checkpoint's
embeddings onto the pre-trained ones first, with a similarity transform fitted on the
TRAIN cases only (extended orthogonal Procrustes, Schoenemann 1966):

    X_aligned = s * (X - mu_X) @ Q + mu_ref,
    Q = U V^T  from  (X_tr - mu_X)^T (Xref_tr - mu_ref) = U S V^T,
    s = trace(S) / ||X_tr - mu_X||_F^2,

Q orthogonal (semi-orthogonal, d_X x d_ref, when the dimensions differ), s > 0 one global
scale. Rotations, permutations, global scale and shift of the pre-trained embeddings are
undone exactly, so the whole lens is invariant to them by construction. It does not undo
per-dimension rescaling or non-linear changes (docs/validity.md measures those). Being
orthogonal it never discards a direction: information gained by fine-tuning in directions
the pre-trained model did not use lands in some direction of the pre-trained space and
stays visible to the decoder (unlike a least-squares map onto the pre-trained embeddings,
which would project gains away).

One exception, checked first: when the checkpoint's train embeddings are an EXACT invertible
affine function of the reference's (least squares both ways leaves a relative residual
under 1e-5, with more train cases than the embeddings' rank), the two carry identical
information and that affine map is the alignment. Per-dimension rescaling (a fine-tuned
LayerNorm's gamma alone), any invertible linear mix, shift and their combinations are then
undone exactly too. Real fine-tuning never passes this check (any change of information
leaves a residual), so everything else goes through the similarity transform above; the
decoder records `alignment_exact_affine`.

`whitened` (an option) runs the Procrustes between whitened embeddings and maps back to the
reference's covariance: it undoes ANY invertible linear map (per-dimension rescaling, as a
fine-tuned LayerNorm makes; duplicated dimensions) exactly, but it forces the reference's
spectrum onto the checkpoint, so information the checkpoint gained lands on directions
where the reference had little variance and reads as weaker (measured: mean delta_r2 about
-0.1 on planted cohorts with as many gains as losses, where similarity and the share-free
control read about 0). Exact duplicates of an earlier dimension carry nothing new and are
left out before either alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radlens_cli.errors import RadlensError

ALIGNMENTS = ("similarity", "whitened", "none")


@dataclass
class Alignment:
    """X -> scale * (X - mean) @ rotation + ref_mean."""

    mean: np.ndarray          # (d_x,)
    rotation: np.ndarray      # (d_x, d_ref)
    scale: float
    ref_mean: np.ndarray      # (d_ref,)
    identity: bool = False
    n_cases: int = 0
    kind: str = "similarity"
    exact_affine: bool = False   # the checkpoint is an exact invertible affine map of the reference

    def apply(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if self.identity:
            return X
        return self.scale * ((X - self.mean) @ self.rotation) + self.ref_mean

    def compose(self, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(W', b') with X W' + b' == apply(X) W + b: the alignment folded into a linear
        layer, so aligning costs a d x d x h product instead of an n x d x d one."""
        W = np.asarray(weight, dtype=np.float64)
        b = np.asarray(bias, dtype=np.float64)
        if self.identity:
            return W, b
        W2 = self.scale * (self.rotation @ W)
        b2 = b + (self.ref_mean - self.scale * (self.mean @ self.rotation)) @ W
        return W2, b2

    @property
    def residual_note(self) -> str:
        if self.identity:
            return f"{self.kind}, identity"
        if self.exact_affine:
            return f"{self.kind}, an exact affine map of the reference"
        return f"{self.kind}" + (f", scale {self.scale:.4g}" if self.kind == "similarity" else "")


def _whitener(Xc: np.ndarray, rel_tol: float = 1e-8):
    """(V, sqrt eigenvalues) of the covariance of centred Xc on its numerical support."""
    w, V = np.linalg.eigh(Xc.T @ Xc / max(1, Xc.shape[0] - 1))
    keep = w > rel_tol * max(float(w.max()), 0.0)
    return V[:, keep], np.sqrt(w[keep])


def fit_whitened_alignment(X: np.ndarray, X_ref: np.ndarray) -> Alignment:
    """Procrustes between the whitened embeddings, mapped back to the reference's scale:
    X -> (X - mu) V_x L_x^-1/2 Q L_ref^1/2 V_ref^T + mu_ref. Undoes any invertible linear
    map (rotation, per-dimension scale, duplicated dimensions) exactly."""
    X = np.asarray(X, dtype=np.float64)
    X_ref = np.asarray(X_ref, dtype=np.float64)
    n = X.shape[0]
    if X.shape == X_ref.shape and np.array_equal(X, X_ref):
        d = X.shape[1]
        return Alignment(np.zeros(d), np.eye(d), 1.0, np.zeros(d), identity=True, n_cases=n,
                         kind="whitened")
    mu, mu_ref = X.mean(axis=0), X_ref.mean(axis=0)
    Vx, sx = _whitener(X - mu)
    Vr, sr = _whitener(X_ref - mu_ref)
    Wx = ((X - mu) @ Vx) / sx
    Wr = ((X_ref - mu_ref) @ Vr) / sr
    U, _, Vt = np.linalg.svd(Wx.T @ Wr, full_matrices=False)
    T = (Vx / sx) @ (U @ Vt) @ (sr[:, None] * Vr.T)
    return Alignment(mu, T, 1.0, mu_ref, n_cases=n, kind="whitened")


def fit_alignment(X: np.ndarray, X_ref: np.ndarray, kind: str = "similarity") -> Alignment:
    if kind == "whitened":
        return fit_whitened_alignment(X, X_ref)
    return fit_similarity_alignment(X, X_ref)


def fit_similarity_alignment(X: np.ndarray, X_ref: np.ndarray, exact_check: bool = True) -> Alignment:
    """Similarity Procrustes from X (n, d_x) onto X_ref (n, d_ref), the same cases in order.

    When X equals X_ref exactly the identity is returned (the pre-trained checkpoint is
    decoded through exactly the map it was fitted on); when X is an exact invertible affine
    map of X_ref (exact_check), that map (see the module's docstring)."""
    X = np.asarray(X, dtype=np.float64)
    X_ref = np.asarray(X_ref, dtype=np.float64)
    if X.shape[0] != X_ref.shape[0]:
        raise ValueError("alignment needs the same cases in both arrays")
    n = X.shape[0]
    if n < 2:
        raise RadlensError("alignment needs at least 2 train cases shared with the share model")
    if X.shape == X_ref.shape and np.array_equal(X, X_ref):
        d = X.shape[1]
        return Alignment(np.zeros(d), np.eye(d), 1.0, np.zeros(d), identity=True, n_cases=n)
    mu, mu_ref = X.mean(axis=0), X_ref.mean(axis=0)
    Xc, Rc = X - mu, X_ref - mu_ref
    T = exact_affine_map(Xc, Rc) if exact_check else None
    if T is not None:
        return Alignment(mu, T, 1.0, mu_ref, n_cases=n, exact_affine=True)
    U, S, Vt = np.linalg.svd(Xc.T @ Rc, full_matrices=False)
    Q = U @ Vt
    norm = float((Xc * Xc).sum())
    if norm <= 0:
        raise RadlensError("the embeddings are constant on the train cases; nothing to align")
    return Alignment(mu, Q, float(S.sum()) / norm, mu_ref, n_cases=n)


def exact_affine_map(Xc: np.ndarray, Rc: np.ndarray, rel_tol: float = 1e-5):
    """T with Xc T == Rc when the centred X and X_ref are exact invertible linear maps of
    each other on these cases (identical information), else None.

    Meaningful only with more cases than the embeddings' rank + 1: with fewer, any two
    matrices are linear maps of each other on those cases, so None is returned."""
    n = Xc.shape[0]
    T, _, rank_x, _ = np.linalg.lstsq(Xc, Rc, rcond=None)
    if n - 1 <= rank_x + 1:
        return None
    scale_r = float(np.linalg.norm(Rc))
    if scale_r == 0 or float(np.linalg.norm(Xc @ T - Rc)) > rel_tol * scale_r:
        return None
    B, _, rank_r, _ = np.linalg.lstsq(Rc, Xc, rcond=None)
    if rank_r != rank_x or float(np.linalg.norm(Rc @ B - Xc)) > rel_tol * float(np.linalg.norm(Xc)):
        return None   # X holds information X_ref lacks (or the reverse): not the same information
    return T
