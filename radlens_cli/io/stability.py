"""icc.csv, the table `radlens stability` writes: column, icc, ci_low, ci_high, n_subjects,
n_replicates (read by compare, stats and report for --stability)."""

from __future__ import annotations

from radlens_cli.errors import RadlensError
from radlens_cli.io.files import input_path

ICC_COLUMNS = ("column", "icc", "ci_low", "ci_high", "n_subjects", "n_replicates")


def read_icc(path: str, what: str = "--stability"):
    """The ICC table as a DataFrame (`column` str, the rest numeric); one-line errors."""
    import pandas as pd

    real = input_path(path, what)
    try:
        df = pd.read_csv(real, dtype={"column": str}, keep_default_na=True)
    except Exception as e:  # pandas raises many types for malformed text
        raise RadlensError(f"{what} {path}: cannot parse as CSV: {e}") from None
    missing = [c for c in ("column", "icc") if c not in df.columns]
    if missing:
        raise RadlensError(f"{what} {path}: missing column(s) {', '.join(missing)} (expected "
                           f"{', '.join(ICC_COLUMNS)}, as `radlens stability` writes)")
    if df["column"].duplicated().any():
        raise RadlensError(f"{what} {path}: column {df.loc[df['column'].duplicated(), 'column'].iloc[0]} "
                           f"appears twice")
    for c in df.columns:
        if c != "column":
            df[c] = pd.to_numeric(df[c], errors="coerce")
    return df
