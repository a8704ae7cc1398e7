"""SHARE.h5, schema share-model/1, written by `radlens fit-share`: the share model's weights,
scaler, column metadata, the sweep and seed models, the reference embeddings; `share_hash`
(a hash of the weights) is checked when lens.ShareModel.from_record reads it back.

The lens's ShareModel serialises itself to plain data (`to_record`); this module writes
and reads that data, and never imports the lens.
"""

from __future__ import annotations

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats import SHARE_SCHEMA, decode_strings, open_h5, read_h5_attrs, write_h5


def save_share(model, path: str, attrs: dict | None = None, force: bool = False) -> None:
    """Write SHARE.h5 (schema share-model/1) of a lens.ShareModel (or its `to_record()`)."""
    rec = model.to_record() if hasattr(model, "to_record") else model
    write_h5(path, SHARE_SCHEMA, rec["datasets"], {**(attrs or {}), **rec["attrs"]}, force,
             groups=rec["groups"])


def load_share(path: str) -> dict:
    """SHARE.h5 as plain data: {"datasets", "groups", "attrs", "path"} (strings decoded);
    lens.ShareModel.from_record(load_share(path)) is the model."""
    shown = "stdin" if path == "-" else path
    with open_h5(path, SHARE_SCHEMA, "share model") as f:
        if "weight" not in f:
            raise RadlensError(f"{shown}: share model lacks 'weight' (not written by fit-share?)")
        datasets = {k: _value(f[k][()]) for k in f if not hasattr(f[k], "keys")}
        groups = {g: {k: _value(f[g][k][()]) for k in f[g]} for g in ("sweep", "seeds", "resplit")
                  if g in f}
        attrs = read_h5_attrs(f)
    return {"datasets": datasets, "groups": groups, "attrs": attrs, "path": shown}


def _value(v):
    """Strings decoded (object arrays of str); numbers as stored."""
    if getattr(v, "dtype", None) is not None and v.dtype.kind in "SO":
        return decode_strings(v)
    return v
