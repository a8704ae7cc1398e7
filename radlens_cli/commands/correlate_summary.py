"""`radlens correlate-summary`: Rad4XCNN explanation before vs after fine-tuning, from two CORR.h5.

Library: lens/correlate.py (summary of two maps), io/formats/correlation.py.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, output_option
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.formats.correlation import read_correlation
from radlens_cli.lens import correlate as lc
from radlens_cli.names import table_column_meta


def _full_axis(c: dict) -> tuple[np.ndarray, dict]:
    """All radiomic columns of a correlation file (kept then excluded) and their metadata."""
    kept = c["columns"]
    excl = c.get("excluded_columns", np.array([], dtype=object))
    cols = np.concatenate([kept, excl])
    kept_meta = {k: c[f"column_{k}"] for k in lc.META_KEYS if f"column_{k}" in c}
    if len(kept_meta) < len(lc.META_KEYS):
        kept_meta = table_column_meta(kept)
    excl_meta = {k: c[f"excluded_column_{k}"] for k in lc.META_KEYS if f"excluded_column_{k}" in c}
    if len(excl_meta) < len(lc.META_KEYS):
        excl_meta = table_column_meta(excl)
    return cols, {k: np.concatenate([kept_meta[k], excl_meta[k]]) for k in lc.META_KEYS}


def _setting(pre: dict, ft: dict, key: str, given: float | None, flag: str) -> float:
    if given is not None:
        return given
    a, b = pre["attrs"].get(key), ft["attrs"].get(key)
    if a is None or b is None:
        raise UsageError(f"{pre['path'] if a is None else ft['path']} records no {key}; give {flag}")
    if float(a) != float(b):
        raise UsageError(f"{pre['path']} used {key} {a} but {ft['path']} used {b}; give {flag} to "
                         f"compare both at one value")
    return float(a)


def correlate_summary(pre_path: str, ft_path: str, output: str, threshold: float | None = None,
                      alpha: float | None = None, force: bool = False):
    """Per modality x family: deep features with a correlated radiomic feature, pre vs ft."""
    if pre_path == "-" and ft_path == "-":
        raise UsageError("only one of the two correlation files can be `-` (stdin)")
    check_output(output, force, suffix=".csv")
    pre = read_correlation(pre_path, "correlation file (pre)")
    ft = read_correlation(ft_path, "correlation file (fine-tuned)")
    cols_pre, meta = _full_axis(pre)
    cols_ft, _ = _full_axis(ft)
    only_pre = sorted(set(cols_pre) - set(cols_ft))
    only_ft = sorted(set(cols_ft) - set(cols_pre))
    if only_pre or only_ft:
        parts = []
        for ids, p in ((only_pre, pre["path"]), (only_ft, ft["path"])):
            if ids:
                more = f" (+{len(ids) - 3} more)" if len(ids) > 3 else ""
                parts.append(f"{len(ids)} only in {p}: {', '.join(ids[:3])}{more}")
        raise RadlensError("different radiomic column sets: " + "; ".join(parts))
    threshold = _setting(pre, ft, "threshold", threshold, "--threshold")
    alpha = _setting(pre, ft, "alpha", alpha, "--alpha")

    pos = {c: i for i, c in enumerate(cols_pre)}

    def full_sig(c):
        sig = np.zeros((c["rho"].shape[0], len(cols_pre)), dtype=bool)
        idx = np.array([pos[x] for x in c["columns"]], dtype=np.int64)
        sig[:, idx] = lc.significant(c["rho"], c["q"], threshold, alpha)
        return sig

    df = lc.summary_table(full_sig(pre), full_sig(ft), meta)
    provenance.declare("correlate-summary", inputs={"pre": pre_path, "ft": ft_path},
                       params={"threshold": threshold, "alpha": alpha},
                       history=provenance.merged_history(pre["attrs"], ft["attrs"]))
    tot = df.iloc[-1]
    log.info(f"correlate-summary: deep features explained {int(tot['deep_pre'])}/{pre['rho'].shape[0]} pre, "
             f"{int(tot['deep_ft'])}/{ft['rho'].shape[0]} fine-tuned; pairs {int(tot['pairs_pre'])} -> "
             f"{int(tot['pairs_ft'])} (|rho| >= {threshold}, q < {alpha})")
    write_csv(df, output, force)
    return df


@command("correlate-summary")
def correlate_summary_cli(
    pre: str = typer.Argument(..., help="Correlation file of the pre-trained encoder (`-` for stdin)."),
    ft: str = typer.Argument(..., help="Correlation file of the fine-tuned encoder (`-` for stdin)."),
    output: str = output_option("Summary CSV (`-` for stdout)."),
    threshold: Optional[float] = typer.Option(None, "--threshold",
                                              help="M (default: the one both files were made with)."),
    alpha: Optional[float] = typer.Option(None, "--alpha",
                                          help="FDR level (default: the one both files were made with)."),
    force: bool = force_option(),
):
    """Rad4XCNN explanation before vs after fine-tuning.

    Reads two correlation files made by `radlens correlate` over the same radiomic columns
    (pre-trained and fine-tuned embeddings) and writes, per modality and radiomic family,
    how many deep features have at least one correlated radiomic feature (|rho| >= M and
    q < alpha) and how many correlated pairs there are, before and after fine-tuning.
    Rows per modality x family, then per modality, per family and all/all:

    \b
      modality,family,n_columns,deep_pre,deep_ft,delta_deep,frac_pre,frac_ft,
      pairs_pre,pairs_ft,delta_pairs

    Files over different radiomic column sets are refused.

    Examples:

    \b
      radlens correlate-summary corr_pre.h5 corr_ft.h5 -o summary.csv
      radlens correlate emb_ft.h5 radiomics.h5 -o - | radlens correlate-summary corr_pre.h5 - -o -
    """
    correlate_summary(pre, ft, output, threshold=threshold, alpha=alpha, force=force)
