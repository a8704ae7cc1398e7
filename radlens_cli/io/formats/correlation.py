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

from radlens_cli.errors import RadlensError
from radlens_cli.io.formats import CORRELATION_SCHEMA, decode_strings, open_h5, read_h5_attrs


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
