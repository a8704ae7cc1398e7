"""Training-time augmentation of finetune."""

from __future__ import annotations

import torch


def augment_batch(x: torch.Tensor, seg_target: torch.Tensor | None, seed: int):
    """Random flips along each spatial axis and per-channel intensity scale/shift.

    Per case: each of D, H, W flipped with probability 1/2 (the segmentation target with
    it); each channel multiplied by U(0.9, 1.1) and shifted by U(-0.1, 0.1) (volumes
    are normalised per channel, so these are in units of the channel's spread).
    Deterministic given `seed`; parameters are drawn on the CPU so every device agrees.
    """
    g = torch.Generator().manual_seed(seed)
    b, c = x.shape[:2]
    flips = torch.rand(b, 3, generator=g) < 0.5
    scale = 0.9 + 0.2 * torch.rand(b, c, generator=g)
    shift = -0.1 + 0.2 * torch.rand(b, c, generator=g)
    x = x * scale.to(x.device, x.dtype).view(b, c, 1, 1, 1) + shift.to(x.device, x.dtype).view(b, c, 1, 1, 1)
    xs, ss = [], []
    for i in range(b):
        dims = [d + 1 for d in range(3) if flips[i, d]]
        xs.append(x[i].flip(dims) if dims else x[i])
        if seg_target is not None:
            ss.append(seg_target[i].flip([d - 1 for d in dims]) if dims else seg_target[i])
    x = torch.stack(xs)
    if seg_target is not None:
        seg_target = torch.stack(ss)
    return x, seg_target
