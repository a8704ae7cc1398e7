"""CORR.h5, schema correlation/1, written by `radlens correlate`.

  rho, p, q        (d, r)  float: Spearman/Pearson correlation, its p-value, BH q over all pairs
  deep_features    (d,)    strings: the embedding columns kept
  columns          (r,)    strings: the radiomic columns kept; column_<meta> their metadata
  case_id          (n,)    strings: the cases correlated
  excluded_deep_features, excluded_deep_reason, excluded_columns, excluded_column_reason,
  excluded_column_<meta>: what was left out (constant, non-finite) and why
  root attributes: radlens_schema, method, threshold, alpha and provenance
"""

from __future__ import annotations

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats import CORRELATION_SCHEMA, decode_strings, open_h5, read_h5_attrs, write_h5


def read_correlation(path: str, what: str) -> dict:
    """A CORR.h5 (correlation/1): rho, q, string datasets decoded, `attrs` and the `path` shown."""
    with open_h5(path, CORRELATION_SCHEMA, what) as f:
        need = ("rho", "q", "deep_features", "columns")
        missing = [k for k in need if k not in f]
        if missing:
            raise RadlensError(f"{'stdin' if path == '-' else path}: missing dataset(s) {', '.join(missing)} "
                               f"(not a valid correlation file)")

        out = {k: f[k][()] for k in ("rho", "q")}
        for k in f:
            if k in ("deep_features", "columns", "excluded_columns", "excluded_deep_features") or \
                    k.startswith(("column_", "excluded_column_")):
                out[k] = decode_strings(f[k][()])
        out["attrs"] = read_h5_attrs(f)
    out["path"] = "stdin" if path == "-" else path
    return out


def write_correlation(path: str, rho, p, q, deep_features, columns, column_meta: dict, keep_deep, keep_columns,
                      deep_reason, column_reason, case_id, attrs: dict, force: bool = False) -> None:
    """Write CORR.h5: the matrices over the kept axes (`keep_*` boolean masks over
    `deep_features` / `columns`), and what was left out with its reason."""
    kx, ky = np.asarray(keep_deep, dtype=bool), np.asarray(keep_columns, dtype=bool)
    deep_features, columns = np.asarray(deep_features, dtype=object), np.asarray(columns, dtype=object)
    datasets = {
        "rho": rho, "p": p, "q": q,
        "deep_features": deep_features[kx], "columns": columns[ky],
        **{f"column_{k}": np.asarray(v, dtype=object)[ky] for k, v in column_meta.items()},
        "case_id": case_id,
        "excluded_deep_features": deep_features[~kx], "excluded_deep_reason": np.asarray(deep_reason)[~kx],
        "excluded_columns": columns[~ky], "excluded_column_reason": np.asarray(column_reason)[~ky],
        **{f"excluded_column_{k}": np.asarray(v, dtype=object)[~ky] for k, v in column_meta.items()},
    }
    write_h5(path, CORRELATION_SCHEMA, datasets, attrs, force)
