"""Taking an embedding out of an encoder's layer, for every kind of encoder (torch modules,
TorchScript, ONNX): pooling a layer's output over space (the one home of embed's `pool`),
and the error that names an unknown layer."""

from __future__ import annotations

import difflib

import numpy as np

from radlens_cli.errors import ParameterError, RadlensError


def pool_features(t, pool: str):
    """(B, d) from a layer's output: (B, d) as it is, (B, C, *spatial) pooled over space."""
    if isinstance(t, (tuple, list)):
        t = next((v for v in t if hasattr(v, "ndim")), None)
        if t is None:
            raise RadlensError("the layer returned no tensor")
    if t.ndim < 2:
        raise RadlensError(f"the layer's output has shape {tuple(t.shape)}; need (batch, channels, ...)")
    if t.ndim == 2:
        return t
    flat = t.reshape(t.shape[0], t.shape[1], -1)
    if isinstance(flat, np.ndarray):
        return flat.mean(-1) if pool == "mean" else flat.max(-1)
    return flat.mean(-1) if pool == "mean" else flat.amax(-1)


def unknown_layer(layer: str, names: list[str], what: str) -> ParameterError:
    close = difflib.get_close_matches(layer, names, n=6, cutoff=0.5)
    shown = close or names[:12]
    more = "" if close or len(names) <= 12 else f" (+{len(names) - 12} more)"
    return ParameterError(f"{{layer}} {layer}: no such {what}; {'close' if close else 'candidates'}: "
                          f"{', '.join(shown)}{more}; `radlens layers ENCODER` lists them with shapes", "layer")
