"""SHARE.h5, schema share-model/1, written by `radlens fit-share`: the share model's weights,
scaler, column metadata, the sweep and seed models, the reference embeddings; `share_hash`
(a hash of the weights) is checked on reading."""

from __future__ import annotations

import json

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats import SHARE_SCHEMA, decode_strings, open_h5, read_h5_attrs, write_h5
from radlens_cli.lens.scaling import Scaler
from radlens_cli.lens.share import ShareModel


def save_share(model: ShareModel, path: str, attrs: dict | None = None, force: bool = False) -> None:
    """Write SHARE.h5 (schema share-model/1); the temporary heads are not kept."""
    sc = model.scaler
    datasets = {
        "weight": np.asarray(model.weight, np.float32),
        "bias": np.asarray(model.bias, np.float32),
        "embedding_columns": np.array(model.embedding_columns, dtype=object),
        "columns": np.array(sc.columns, dtype=object),
        "scale_offset": np.asarray(sc.offset, np.float64),
        "scale_factor": np.asarray(sc.factor, np.float64),
        "dropped_columns": np.array([c for c, _ in sc.dropped], dtype=object),
        "dropped_reasons": np.array([r for _, r in sc.dropped], dtype=object),
    }
    for k, v in model.column_meta.items():
        datasets[f"column_{k}"] = np.asarray(v, dtype=object)
    if model.share_case_id is not None:
        datasets["share_case_id"] = np.asarray(model.share_case_id, dtype=object)
    if model.reference_X is not None:
        datasets["reference_case_id"] = np.asarray(model.reference_case_id, dtype=object)
        datasets["reference_embeddings"] = np.asarray(model.reference_X, np.float64)
    groups = {}
    if model.sweep:
        groups["sweep"] = {k: np.asarray(v) for k, v in model.sweep.items()}
    if model.resplit is not None:
        groups["resplit"] = {k: (np.asarray(v, dtype=object) if k == "case_id" else np.asarray(v))
                             for k, v in model.resplit.items()}
    if model.extra:
        groups["seeds"] = {"seed": np.array([e[0] for e in model.extra], dtype=np.int64),
                           "weight": np.stack([np.asarray(e[1], np.float32) for e in model.extra]),
                           "bias": np.stack([np.asarray(e[2], np.float32) for e in model.extra]),
                           "ridge": np.array([e[3] for e in model.extra], dtype=np.float64)}
    own = {"activation": model.activation, "scale": sc.kind, "hidden": model.hidden,
           "embedding_dim": model.embedding_dim, "share_hash": model.share_hash,
           "method": model.method, "ridge": float(model.ridge),
           "embedding_params": json.dumps(model.embedding_params, sort_keys=True)}
    write_h5(path, SHARE_SCHEMA, datasets, {**(attrs or {}), **own}, force, groups=groups)


def load_share(path: str) -> ShareModel:
    """Read SHARE.h5 and check its content hash."""
    shown = "stdin" if path == "-" else path
    with open_h5(path, SHARE_SCHEMA, "share model") as f:
        try:
            attrs = read_h5_attrs(f)
            strs = {k: list(decode_strings(f[k][()])) for k in
                    ("embedding_columns", "columns", "dropped_columns", "dropped_reasons")}
            meta = {k[len("column_"):]: decode_strings(f[k][()]) for k in f
                    if k.startswith("column_") and k != "columns"}
            sweep = {k: f["sweep"][k][()] for k in f["sweep"]} if "sweep" in f else None
            scaler = Scaler(kind=str(attrs["scale"]), columns=strs["columns"],
                            offset=f["scale_offset"][()], factor=f["scale_factor"][()],
                            dropped=list(zip(strs["dropped_columns"], strs["dropped_reasons"])))
            model = ShareModel(weight=f["weight"][()], bias=f["bias"][()],
                               activation=str(attrs["activation"]),
                               embedding_columns=strs["embedding_columns"], scaler=scaler,
                               column_meta=meta, sweep=sweep,
                               params=json.loads(attrs.get("params", "{}")),
                               method=str(attrs.get("method", "paper")),
                               ridge=float(attrs.get("ridge", 0.0)),
                               embedding_params=json.loads(attrs.get("embedding_params", "{}")))
            if "share_case_id" in f:
                model.share_case_id = decode_strings(f["share_case_id"][()])
            if "seeds" in f:
                g = f["seeds"]
                model.extra = [(int(a), w, b, float(r)) for a, w, b, r in
                               zip(g["seed"][()], g["weight"][()], g["bias"][()], g["ridge"][()])]
            if "resplit" in f:
                g = f["resplit"]
                model.resplit = {k: (decode_strings(g[k][()]) if k == "case_id" else g[k][()])
                                 for k in g}
            if "reference_embeddings" in f:
                model.reference_case_id = decode_strings(f["reference_case_id"][()])
                model.reference_X = f["reference_embeddings"][()]
        except KeyError as e:
            raise RadlensError(f"{shown}: share model lacks {e} (not written by fit-share?)") from None
        stored = attrs.get("share_hash")
        model.attrs = attrs
    if stored != model.share_hash:
        raise RadlensError(f"{shown}: share_hash does not match the stored weights "
                           f"(file modified or corrupt)")
    return model
