"""From a loaded encoder to (batch, d) embeddings: device, fingerprint, layer and pooling.

`embed` reads and batches the cases; everything that depends on what kind of encoder it
runs (built-in, TorchScript, factory) lives here behind one `Embedder` object, so the
command's loop stays the same whatever the model is.
"""

from __future__ import annotations

import hashlib

import numpy as np

from radlens_cli import log
from radlens_cli.errors import RadlensError, UsageError

DEFAULT_SPACING = (0.5, 0.5, 1.0)
DEFAULT_CROP = (224, 224, 64)  # x, y, z voxels (ProFound's 64x224x224 D,H,W box)


def resolve_device(device: str):
    import torch

    d = (device or "auto").strip().lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine")
        return torch.device(d)
    if d == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N (got {device!r})")


def model_fingerprint(model) -> str:
    """sha256 over the model's parameters and buffers (names, shapes, bytes)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def preprocessing_config(modalities, mask, spacing, crop, norm, recorded: dict | None, orient: str | None = None,
                         layout: str | None = None, norm_region: str | None = None):
    """The run's PreprocessConfig: command line first, then the checkpoint's record, then defaults.

    spacing and crop are "x,y,z" strings (or tuples); a record written before crops were
    x,y,z (preprocessing version 1, D,H,W) is read in its own order.
    """
    from radlens_cli.encoders.preprocess import PreprocessConfig, crop_from_record, parse_triple

    rec = recorded or {}
    sp = (parse_triple(spacing, "--spacing") if isinstance(spacing, str) else tuple(spacing)) if spacing \
        else tuple(rec.get("spacing", DEFAULT_SPACING))
    cr = (parse_triple(crop, "--crop", int) if isinstance(crop, str) else tuple(crop)) if crop \
        else crop_from_record(rec, DEFAULT_CROP)
    nm = norm or rec.get("norm", "zscore")
    if rec.get("modalities") and list(rec["modalities"]) != list(modalities):
        log.warn(f"the encoder was trained on modalities {','.join(rec['modalities'])} "
                 f"(channel order matters); --modalities gives {','.join(modalities)}")
    return PreprocessConfig(modalities=list(modalities), mask=mask, spacing=sp, crop=cr, norm=nm,
                            orient=orient or rec.get("orient", "native"), layout=layout or rec.get("layout", "zyx"),
                            norm_region=norm_region or rec.get("norm_region", "box"))


class Embedder:
    """A torch encoder on a device with a layer and pooling: (B, C, ...) tensor -> (B, d) float64."""

    def __init__(self, model, info: dict, spec: str, layer: str, pool: str, device):
        self.model, self.info, self.spec, self.layer, self.pool, self.device = model, info, spec, layer, pool, device
        self.use_amp = device.type == "cuda"
        self.fingerprint = model_fingerprint(model)

    @property
    def source(self) -> str:
        return self.info["source"]

    @property
    def arch(self) -> str:
        return self.info["arch"]

    def check_config(self, cfg) -> None:
        """Refuse preprocessing the model cannot take, before any case is read."""
        if hasattr(self.model, "dims") and hasattr(self.model, "stages") and min(cfg.crop) < 16:
            raise UsageError(f"--crop {','.join(map(str, cfg.crop))}: the ConvNeXt-V2 downsamples 16-fold; "
                             f"every side of the box needs at least 16 voxels")

    def __call__(self, x, first_case: str = "") -> np.ndarray:
        import torch

        from radlens_cli.encoders.convnextv2 import extract_embedding

        x = x.to(self.device, non_blocking=True)
        try:
            if self.use_amp:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    e = extract_embedding(self.model, x, self.layer, self.pool)
            else:
                e = extract_embedding(self.model, x, self.layer, self.pool)
        except (RuntimeError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RadlensError(f"{self.spec}: forward pass failed on input {tuple(x.shape)} "
                               f"(case {first_case}...): {first}") from None
        e = e.float().cpu().numpy().astype(np.float64)
        if e.ndim != 2 or e.shape[0] != x.shape[0]:
            raise RadlensError(f"{self.spec}: expected a (batch, d) embedding, got shape {tuple(e.shape)}")
        return e


def load_embedder(spec: str, arch: str | None = None, layer: str = "final", pool: str = "mean",
                  device=None, trust: bool = False, modalities: list | None = None) -> Embedder:
    """Load the encoder `spec` (see checkpoints.load_encoder) for `layer`/`pool` on `device`."""
    import torch

    from radlens_cli.encoders.checkpoints import load_encoder
    from radlens_cli.encoders.convnextv2 import LAYERS, POOLS

    if layer not in LAYERS:
        raise UsageError(f"--layer must be one of {', '.join(LAYERS)} (got {layer!r})")
    if pool not in POOLS:
        raise UsageError(f"--pool must be one of {', '.join(POOLS)} (got {pool!r})")
    device = device if device is not None else torch.device("cpu")
    model, info = load_encoder(spec, arch=arch, map_location="cpu", trust=trust)
    if modalities is not None and info["in_chans"] is not None and int(info["in_chans"]) != len(modalities):
        raise RadlensError(f"{spec}: the encoder takes {info['in_chans']} input channel(s) but "
                           f"--modalities gives {len(modalities)} ({','.join(modalities)})")
    if layer != "final" and not hasattr(model, "forward_features"):
        raise UsageError(f"--layer {layer}: encoder {spec} ({info['source']}) has no forward_features; "
                         f"use --layer final")
    return Embedder(model.to(device).eval(), info, spec, layer, pool, device)
