"""The 3D ConvNeXt-V2 family, laid out exactly as ProFound's encoder so its checkpoints load.

Architecture facts (docs/encoders.md; the layout follows ProFound's code):
- stem: Conv3d(in, dims[0], k=4, s=4) + channels-first LayerNorm(eps 1e-6);
  downsample i=0,1: LayerNorm + Conv3d(k=2, s=2); i=2: LayerNorm + Conv3d(k=1, s=1)
  (the last stage keeps the resolution of the third);
- block: depthwise Conv3d(k=7, p=3) -> channels-last -> LayerNorm -> Linear(d, 4d) -> GELU
  -> GRN -> Linear(4d, d) -> channels-first -> drop-path -> residual;
- embedding: LayerNorm(mean over the three spatial axes of the last stage).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from radlens_cli.encoders.layers import pool_features
from radlens_cli.errors import ParameterError, UsageError

ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "convnextv2_atto": ((2, 2, 6, 2), (40, 80, 160, 320)),
    "convnextv2_femto": ((2, 2, 6, 2), (48, 96, 192, 384)),
    "convnextv2_pico": ((2, 2, 6, 2), (64, 128, 256, 512)),
    "convnextv2_nano": ((2, 2, 8, 2), (80, 160, 320, 640)),
    "convnextv2_tiny": ((3, 3, 9, 3), (96, 192, 384, 768)),
    "convnextv2_base": ((3, 3, 27, 3), (128, 256, 512, 1024)),
    "convnextv2_large": ((3, 3, 27, 3), (192, 384, 768, 1536)),
    "convnextv2_huge": ((3, 3, 27, 3), (352, 704, 1408, 2816)),
}

class LayerNorm(nn.Module):
    """LayerNorm over channels, for channels_last (B, ..., C) or channels_first (B, C, ...)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, data_format: str = "channels_last"):
        super().__init__()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(data_format)
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        self.normalized_shape = (normalized_shape,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        # channels_first: normalise over dim 1 in float32 for stability under autocast
        dtype = x.dtype
        x = x.float()
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + self.eps)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        x = self.weight.float().view(shape) * x + self.bias.float().view(shape)
        return x.to(dtype)


class GRN(nn.Module):
    """Global Response Normalisation for channels-last 5-D input (B, D, H, W, C)."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.norm(x, p=2, dim=(1, 2, 3), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class Block(nn.Module):
    def __init__(self, dim: int, drop_path: float = 0.0):
        super().__init__()
        self.dwconv = nn.Conv3d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 4, 1)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.grn(x)
        x = self.pwconv2(x)
        x = x.permute(0, 4, 1, 2, 3)
        return shortcut + drop_path(x, self.drop_path, self.training)


class ConvNeXtV23D(nn.Module):
    """3D ConvNeXt-V2 encoder (no classification head).

    forward_features(x) -> the four stage outputs (B, dims[i], D_i, H_i, W_i);
    forward(x) -> (B, dims[-1]) = LayerNorm(global mean of the last stage).
    """

    def __init__(self, in_chans: int = 3, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768),
                 drop_path_rate: float = 0.0):
        super().__init__()
        depths, dims = tuple(int(d) for d in depths), tuple(int(d) for d in dims)
        if len(depths) != 4 or len(dims) != 4:
            raise ValueError("ConvNeXtV23D needs four stages")
        self.in_chans = int(in_chans)
        self.depths = depths
        self.dims = dims
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(nn.Sequential(
            nn.Conv3d(in_chans, dims[0], kernel_size=4, stride=4),
            LayerNorm(dims[0], eps=1e-6, data_format="channels_first"),
        ))
        for i in range(3):
            k = 2 if i < 2 else 1
            self.downsample_layers.append(nn.Sequential(
                LayerNorm(dims[i], eps=1e-6, data_format="channels_first"),
                nn.Conv3d(dims[i], dims[i + 1], kernel_size=k, stride=k),
            ))
        rates = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        self.stages = nn.ModuleList()
        cur = 0
        for i in range(4):
            self.stages.append(nn.Sequential(*[Block(dims[i], rates[cur + j]) for j in range(depths[i])]))
            cur += depths[i]
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv3d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    @property
    def embed_dim(self) -> int:
        return self.dims[-1]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i in range(4):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
            outs.append(x)
        return outs

    def pool(self, last: torch.Tensor) -> torch.Tensor:
        """The embedding from a last-stage map: LayerNorm of its spatial mean."""
        return self.norm(last.mean(dim=(-3, -2, -1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(4):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
        return self.pool(x)


def build_encoder(arch: str, in_chans: int, drop_path_rate: float = 0.0) -> ConvNeXtV23D:
    """A ConvNeXtV23D of a named family member (`convnextv2_tiny` or just `tiny`)."""
    name = arch if arch in ARCHS else f"convnextv2_{arch}"
    if name not in ARCHS:
        raise UsageError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    if int(in_chans) < 1:
        raise ParameterError(f"{{in_chans}} must be >= 1 (got {in_chans})", "in_chans")
    depths, dims = ARCHS[name]
    return ConvNeXtV23D(in_chans=int(in_chans), depths=depths, dims=dims, drop_path_rate=drop_path_rate)


def canonical_arch(arch: str) -> str:
    return arch if arch in ARCHS else f"convnextv2_{arch}"


LAYERS = ("final", "stage1", "stage2", "stage3", "stage4")
POOLS = ("mean", "max")


def extract_embedding(model: nn.Module, x: torch.Tensor, layer: str = "final", pool: str = "mean") -> torch.Tensor:
    """(B, d) embedding of a batch.

    final: the model's own forward (built-in encoder: LayerNorm of the global mean of the
    last stage); stageN: the N-th stage output pooled over the three spatial axes (mean or
    max), without normalisation. Other modules need `forward_features` for stageN.
    """
    if layer == "final":
        out = model(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return pool_features(out, pool)
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}")
    feats = model.forward_features(x)
    if isinstance(feats, tuple) and len(feats) == 2 and isinstance(feats[1], (list, tuple)):
        feats = feats[1]  # ProFound-style (pooled, hidden_states)
    f = feats[int(layer[-1]) - 1]
    return pool_features(f, pool)
