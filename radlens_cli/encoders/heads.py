"""Task heads of the paper's fine-tuning (Section 3.3), their losses and their metrics.

- classify: Linear(d, 256) - BatchNorm1d - ReLU - Linear(256, n_classes); cross-entropy;
  metric quadratic weighted kappa (QWK) over the ordered class list.
- regress: BatchNorm1d - Linear(d, 1); MSE on the standardised target.
- segment: UPerNet (Xiao et al. 2018) over the encoder's four stage outputs: a pyramid
  pooling module on the last stage, FPN laterals with a top-down path, fusion of all
  levels at the finest one, and a trilinear upsampling to the input size; soft Dice loss;
  metric mean Dice over cases (binary foreground).

Heads take the embedding (B, d) for classify/regress and the list of stage outputs for
segment; `TaskModel` binds an encoder and a head so DDP sees one module. Which head,
loss and metric each task uses is the registry in tasks.py.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

class ClassifyHead(nn.Module):
    """Linear(d, hidden) - BatchNorm1d - ReLU - Linear(hidden, n_classes)."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int = 256):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, n_classes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.bn(self.fc1(z))))


class RegressHead(nn.Module):
    """BatchNorm1d(d) - Linear(d, 1); predicts the standardised target."""

    def __init__(self, in_dim: int, n_outputs: int = 1):
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.fc = nn.Linear(in_dim, n_outputs)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fc(self.bn(z)).squeeze(-1)


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, k, padding=k // 2, bias=False),
                         nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class UPerNetHead(nn.Module):
    """UPerNet over four 3-D feature maps (finest first), output at the input's size.

    The pooled pyramid branches use a biased conv without normalisation: a 1x1x1 pooled
    map cannot be batch-normalised at batch size 1, the common case for 3-D volumes.
    """

    def __init__(self, in_dims, n_classes: int = 1, channels: int = 128, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        in_dims = [int(d) for d in in_dims]
        if len(in_dims) != 4:
            raise ValueError("UPerNetHead needs four stage outputs")
        self.pool_scales = tuple(pool_scales)
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool3d(s), nn.Conv3d(in_dims[-1], channels, 1), nn.ReLU(inplace=True))
            for s in self.pool_scales)
        self.bottleneck = _conv_bn_relu(in_dims[-1] + len(self.pool_scales) * channels, channels, 3)
        self.lateral = nn.ModuleList(_conv_bn_relu(d, channels, 1) for d in in_dims[:-1])
        self.fpn = nn.ModuleList(_conv_bn_relu(channels, channels, 3) for _ in in_dims[:-1])
        self.fuse = _conv_bn_relu(len(in_dims) * channels, channels, 3)
        self.classifier = nn.Conv3d(channels, n_classes, 1)

    @staticmethod
    def _up(x: torch.Tensor, size) -> torch.Tensor:
        if tuple(x.shape[2:]) == tuple(size):
            return x
        return F.interpolate(x, size=size, mode="trilinear", align_corners=False)

    def forward(self, feats, out_size=None) -> torch.Tensor:
        last = feats[-1]
        ppm = [last] + [self._up(b(last), last.shape[2:]) for b in self.ppm]
        top = self.bottleneck(torch.cat(ppm, dim=1))
        lats = [lat(f) for lat, f in zip(self.lateral, feats[:-1])] + [top]
        for i in range(len(lats) - 1, 0, -1):  # top-down path
            lats[i - 1] = lats[i - 1] + self._up(lats[i], lats[i - 1].shape[2:])
        outs = [conv(x) for conv, x in zip(self.fpn, lats[:-1])] + [lats[-1]]
        size = outs[0].shape[2:]
        fused = self.fuse(torch.cat([self._up(o, size) for o in outs], dim=1))
        logits = self.classifier(fused)
        if out_size is not None:
            logits = self._up(logits, out_size)
        return logits


class TaskModel(nn.Module):
    """Encoder + head as one module (what DDP wraps).

    With `frozen_encoder` the encoder runs without autograd and in eval mode, so only
    the head learns (the paper's "pre-trained" rows of Table 2).
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, task: str, frozen_encoder: bool = False):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.task = task
        self.frozen_encoder = frozen_encoder
        if frozen_encoder:
            for p in encoder.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()
        return self

    def _encode(self, x):
        if self.task == "segment":
            return self.encoder.forward_features(x)
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.frozen_encoder:
            with torch.no_grad():
                z = self._encode(x)
        else:
            z = self._encode(x)
        if self.task == "segment":
            return self.head(z, out_size=x.shape[2:])
        return self.head(z)


# ---- losses ---------------------------------------------------------------------------

def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss, mean over cases: 1 - (2 sum(p g) + eps) / (sum p + sum g + eps).

    logits (B, 1, D, H, W) or (B, D, H, W); target the same shape with values in {0, 1};
    p = sigmoid(logits). The smoothing `eps` keeps an empty target with an empty
    prediction at loss 0.
    """
    p = torch.sigmoid(logits.float()).flatten(1)
    g = target.float().reshape(p.shape)
    inter = (p * g).sum(1)
    denom = p.sum(1) + g.sum(1)
    return (1.0 - (2.0 * inter + eps) / (denom + eps)).mean()


# ---- metrics --------------------------------------------------------------------------

def quadratic_weighted_kappa(y_true, y_pred, labels=None) -> float:
    """Cohen's kappa with quadratic weights (QWK), as sklearn's cohen_kappa_score.

    kappa = 1 - sum(W * O) / sum(W * E), O the confusion matrix, E the outer product of
    its marginals scaled to the same total, W_ij = (i - j)^2 over the label order.
    Labels default to the sorted union of both arrays. NaN when E has no off-diagonal
    mass (a single class), like sklearn.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError("y_true and y_pred differ in length")
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    k = len(labels)
    index = {v: i for i, v in enumerate(labels.tolist())}
    keep = np.array([t in index and p in index for t, p in zip(y_true.tolist(), y_pred.tolist())], dtype=bool)
    ti = np.array([index[v] for v in y_true[keep].tolist()], dtype=np.int64)
    pi = np.array([index[v] for v in y_pred[keep].tolist()], dtype=np.int64)
    obs = np.zeros((k, k), dtype=np.float64)
    np.add.at(obs, (ti, pi), 1.0)
    total = obs.sum()
    if total == 0:
        return float("nan")
    expected = np.outer(obs.sum(1), obs.sum(0)) / total
    idx = np.arange(k, dtype=np.float64)
    w = (idx[:, None] - idx[None, :]) ** 2
    den = (w * expected).sum()
    if den == 0:
        return float("nan")
    return float(1.0 - (w * obs).sum() / den)


def dice_scores_torch(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Hard Dice per case (prediction: logit > 0, i.e. sigmoid > 1/2); 1 where both are empty."""
    pred = (logits.reshape(target.shape) > 0).flatten(1)
    t = (target > 0.5).flatten(1)
    inter = (pred & t).sum(1).double()
    denom = (pred.sum(1) + t.sum(1)).double()
    return torch.where(denom > 0, 2.0 * inter / denom.clamp(min=1.0), torch.ones_like(denom))


def dice_scores(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Hard Dice per case for binary masks (B, ...); 1 where both are empty."""
    pred = np.asarray(pred).reshape(len(pred), -1).astype(bool)
    target = np.asarray(target).reshape(len(target), -1).astype(bool)
    inter = (pred & target).sum(1).astype(np.float64)
    denom = pred.sum(1) + target.sum(1)
    out = np.ones(len(pred), dtype=np.float64)
    nz = denom > 0
    out[nz] = 2.0 * inter[nz] / denom[nz]
    return out
