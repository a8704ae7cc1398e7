"""Checks that two things the lens compares were made the same way.

- Embedding preprocessing: embed records how each embedding table was made (spacing,
  crop, normalisation, orientation... under params["preprocessing"], plus the layer and
  pooling). Decoding fine-tuned embeddings made with another spacing or layer than the
  pre-trained ones measures the preprocessing, not fine-tuning; the lens refuses unless
  told the difference is intended (comparing different foundation models on purpose).
- Decoder settings: decoders compared (compare, stats) must share the share model, the
  evaluation split, the intercept, the ridge alpha, the method and the alignment.
"""

from __future__ import annotations

import json
import re

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError
from radlens_cli.provenance import json_attr

# settings of embed's params outside "preprocessing" that change what an embedding is
EMBED_KEYS = ("layer", "pool", "modalities", "in_chans")
_OBJECT_REPR = re.compile(r"^<[\w.]+ object at 0x[0-9a-fA-F]+>$")


def embedding_params(attrs: dict) -> dict:
    """The preprocessing-relevant settings recorded in an embedding table's attributes
    (flattened: 'spacing', 'crop', ..., 'layer', 'pool'); {} when none is recorded."""
    params = json_attr(attrs, "params", {})
    if not isinstance(params, dict):
        return {}
    out = {}
    pre = params.get("preprocessing")
    if isinstance(pre, dict):
        out.update({str(k): v for k, v in pre.items()})
    for k in EMBED_KEYS:
        if k in params:
            out[k] = params[k]
    # a Python object's repr is not a setting (embed once recorded an executor as `pool`)
    return {k: v for k, v in out.items() if not _OBJECT_REPR.match(str(v))}


def preprocessing_differences(a: dict, b: dict) -> list[str]:
    """'setting (A vs B)' for every recorded setting that differs; [] if either records none."""
    if not a or not b:
        return []
    diffs = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k, "(not recorded)"), b.get(k, "(not recorded)")
        if json.dumps(va, sort_keys=True, default=str) != json.dumps(vb, sort_keys=True, default=str):
            diffs.append(f"{k} ({_show(va)} vs {_show(vb)})")
    return diffs


def _show(v) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def require_same_preprocessing(a: dict, b: dict, what_a: str, what_b: str, allow: bool,
                               warn=None, option: str = "allow_different_preprocessing=True") -> None:
    """Named error when two embeddings' recorded preprocessing differs, unless `allow`.

    option: how the caller's parameter that allows it reads from Python; the command
    wrapper shows it as --allow-different-preprocessing (a ParameterError)."""
    diffs = preprocessing_differences(a, b)
    if not diffs:
        return
    msg = (f"{what_a} and {what_b} were embedded differently: {'; '.join(diffs)}")
    if not allow:
        raise ParameterError(msg + " (use {allow_different_preprocessing} if this is intended)",
                             "allow_different_preprocessing", exit_code=EXIT_DATA,
                             plain={"allow_different_preprocessing": option})
    if warn:
        warn(msg + " (allowed)")


def decoder_settings(dec) -> dict:
    """The settings two decoders must share to be compared."""
    a = dec.attrs
    if str(a.get("method")) == "symmetric":   # own alpha per checkpoint and re-split
        return {"share model (share_hash)": dec.share_hash, "method": "symmetric",
                "re-split protocol": str(a.get("protocol_hash"))}
    return {"share model (share_hash)": dec.share_hash,
            "evaluation split": str(a.get("eval_split")),
            "intercept": bool(dec.intercept),
            "ridge": float(dec.ridge),
            "method": str(a.get("method", "paper")),
            "alignment": str(a.get("alignment", "none"))}


def require_compatible(ref, other, warn=None, allow_preprocessing: bool = False) -> None:
    """Named error when two decoders differ in any setting of `decoder_settings`."""
    sa, sb = decoder_settings(ref), decoder_settings(other)
    for k in sa:
        if sa[k] != sb[k]:
            va, vb = sa[k], sb[k]
            if k.startswith("share model"):
                va, vb = f"{va[:12]}...", f"{vb[:12]}..."
                raise RadlensError(f"{ref.path} and {other.path} were decoded with different share "
                                   f"models (share_hash {va} vs {vb}); decode both embeddings "
                                   f"with the same SHARE.h5")
            raise RadlensError(f"{ref.path} and {other.path} differ in {k} ({va} vs {vb}); "
                               f"decode both the same way")
    if list(ref.columns) != list(other.columns):
        raise RadlensError(f"{ref.path} and {other.path} decode different radiomic columns")
    pa = json.loads(ref.attrs.get("embedding_preprocessing", "{}"))
    pb = json.loads(other.attrs.get("embedding_preprocessing", "{}"))
    require_same_preprocessing(pa, pb, ref.path, other.path, allow_preprocessing, warn,
                               option="allow_preprocessing=True")
    exact_map = str(other.attrs.get("same_information", "no")) == "exact-affine"
    if (np.array_equal(ref.theta, other.theta) and np.array_equal(ref.r2, other.r2, equal_nan=True)
            and not exact_map):   # an exact map of the reference decodes identically by design
        if warn:
            warn(f"{ref.path} and {other.path} hold identical decoders (the same embeddings "
                 f"twice?); every change will be zero")
