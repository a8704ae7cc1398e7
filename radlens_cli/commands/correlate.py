"""`radlens correlate`: Rad4XCNN correlation maps (CORR.h5, schema correlation/1, see io/formats/correlation.py).

Library: lens/correlate.py (Spearman maps, p and BH q), io/formats/correlation.py.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import allow_missing_option, force_option, output_option
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.formats.correlation import write_correlation
from radlens_cli.io.tables import align_cases, read_table
from radlens_cli.lens import correlate as lc
from radlens_cli.names import table_column_meta

def _select_split(emb, rad, split: str):
    """Boolean mask over the aligned rows: the embedding table's split, else the radiomics'."""
    for t in (emb, rad):
        if t.split is not None:
            return t.split_mask(split)
    raise RadlensError(f"--split {split}: neither {emb.path} nor {rad.path} has a `split` dataset")


def _check_outputs(paths: dict, force: bool) -> None:
    given = {k: v for k, v in paths.items() if v}
    if sum(v == "-" for v in given.values()) > 1:
        raise UsageError(f"only one of {', '.join(given)} can be `-` (stdout)")
    real = [os.path.abspath(v) for v in given.values() if v != "-"]
    if len(set(real)) != len(real):
        raise UsageError("two outputs name the same file")
    for k, v in given.items():
        check_output(v, force, suffix=(".h5", ".hdf5") if k == "--output" else ".csv")


def correlate(emb_path: str, rad_path: str, output: str, method: str = "spearman",
              threshold: float = 0.5, alpha: float = 0.05, split: str | None = None,
              allow_missing: bool = False, pairs: str | None = None, explain: str | None = None,
              explain_top: int = 5, force: bool = False) -> dict:
    """Correlate every embedding dimension with every radiomic column; write CORR.h5 (+ CSVs)."""
    if method not in lc.METHODS:
        raise UsageError(f"--method {method}: use {' or '.join(lc.METHODS)}")
    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold}: must lie in [0, 1]")
    if not 0.0 < alpha <= 1.0:
        raise UsageError(f"--alpha {alpha}: must lie in (0, 1]")
    if explain_top < 1:
        raise UsageError("--explain-top must be at least 1")
    _check_outputs({"--output": output, "--pairs": pairs, "--explain": explain}, force)

    emb = read_table(emb_path, "embeddings")
    rad = read_table(rad_path, "radiomics")
    ie, ir = align_cases(emb, rad, allow_missing, names=("embeddings", "radiomics"))
    emb, rad = emb.take(ie), rad.take(ir)
    if split:
        mask = _select_split(emb, rad, split)
        if not mask.any():
            raise RadlensError(f"--split {split}: no shared case is in split {split!r}")
        emb, rad = emb.take(mask), rad.take(mask)
    meta = table_column_meta(rad.columns, rad.column_meta)

    res = lc.correlate(emb.values, rad.values, method=method)
    kx, ky = res.keep_x, res.keep_y
    deep = np.array(emb.columns, dtype=object)
    cols = np.array(rad.columns, dtype=object)
    for what, names, reason in (("deep feature", deep, res.reason_x), ("radiomic column", cols, res.reason_y)):
        bad = reason != ""
        if bad.any():
            shown = ", ".join(f"{n} ({r})" for n, r in zip(names[bad][:5], reason[bad][:5]))
            more = f" (+{int(bad.sum()) - 5} more)" if bad.sum() > 5 else ""
            log.warn(f"correlate: {int(bad.sum())} {what}(s) excluded: {shown}{more}")
    sig = lc.significant(res.rho, res.q, threshold, alpha)
    n_sig = int(sig.sum())
    n_deep = int(sig.any(axis=1).sum())
    log.info(f"correlate: {res.n_cases} cases, {int(kx.sum())} deep features x {int(ky.sum())} radiomic "
             f"columns ({method}); {n_sig} pairs with |rho| >= {threshold} and q < {alpha}; "
             f"{n_deep} deep feature(s) explained by at least one radiomic feature")

    params = {"method": method, "threshold": threshold, "alpha": alpha, "split": split,
              "allow_missing": allow_missing, "n_cases": res.n_cases}
    attrs = provenance.build("correlate", inputs={"embeddings": emb_path, "radiomics": rad_path},
                             params=params, history=provenance.merged_history(emb.attrs, rad.attrs))
    attrs.update({"method": method, "threshold": threshold, "alpha": alpha, "n_cases": res.n_cases})
    provenance.declare("correlate", inputs={"embeddings": emb_path, "radiomics": rad_path},
                       params=params, history=provenance.merged_history(emb.attrs, rad.attrs))
    kept_meta = {k: meta[k][ky] for k in lc.META_KEYS}
    # CSVs first: `-o -` streams the HDF5 last, after every other output is in place
    if pairs:
        write_csv(lc.pairs_table(res.rho, res.p, res.q, deep[kx], cols[ky], kept_meta, threshold, alpha),
                   pairs, force)
    if explain:
        write_csv(lc.explanation_table(res.rho, res.q, deep[kx], cols[ky], kept_meta, threshold, alpha,
                                        explain_top), explain, force)
    write_correlation(output, res.rho, res.p, res.q, deep, cols, {k: meta[k] for k in lc.META_KEYS}, kx, ky,
                      res.reason_x, res.reason_y, emb.case_id, attrs, force)
    return {"n_cases": res.n_cases, "n_pairs": n_sig, "n_deep_explained": n_deep}


@command("correlate")
def correlate_cli(
    embeddings: str = typer.Argument(..., help="Embedding case table (HDF5/CSV; `-` for stdin)."),
    radiomics: str = typer.Argument(..., help="Radiomics case table (HDF5/CSV; `-` for stdin)."),
    output: str = output_option("Correlation file CORR.h5 (schema correlation/1; `-` for stdout)."),
    method: str = typer.Option("spearman", "--method", help="spearman (Rad4XCNN) or pearson."),
    threshold: float = typer.Option(0.5, "--threshold", help="M: a pair is correlated when |rho| >= M."),
    alpha: float = typer.Option(0.05, "--alpha", help="... and its BH-FDR q-value is below alpha."),
    split: Optional[str] = typer.Option(None, "--split", help="Only cases of this split (train, val or test)."),
    allow_missing: bool = allow_missing_option("Use the cases in both tables instead of refusing a mismatch."),
    pairs: Optional[str] = typer.Option(None, "--pairs",
                                        help="Also write the correlated pairs as a long CSV table."),
    explain: Optional[str] = typer.Option(None, "--explain",
                                          help="Also write one CSV row per deep feature: its correlated "
                                               "radiomic features (the global explanation)."),
    explain_top: int = typer.Option(5, "--explain-top", help="How many radiomic features --explain lists."),
    force: bool = force_option(),
):
    """Rad4XCNN map: Spearman rho, deep vs radiomic features.

    Correlates every embedding dimension with every radiomic column over the cases the two
    tables share (joined on case_id), with two-sided p-values (t approximation, as
    scipy.stats.spearmanr) and Benjamini-Hochberg q-values over all pairs. Constant and
    non-finite columns are excluded and listed, never written as NaN.

    Writes CORR.h5 (schema correlation/1): rho, p and q matrices (deep features x radiomic
    columns, float64), both axes' names, the radiomic column metadata (modality,
    image_type, family, feature), the excluded columns, the cases used and the
    threshold. --pairs writes the pairs with |rho| >= M and q < alpha:

    \b
      deep_feature,column,modality,image_type,family,feature,rho,p,q

    --explain writes one row per deep feature with its number of correlated radiomic
    features, the strongest, and their families.

    Examples:

    \b
      radlens correlate emb_pre.h5 radiomics.h5 -o corr_pre.h5 --pairs pairs_pre.csv
      radlens correlate emb_ft.h5 radiomics.h5 -o corr_ft.h5 --explain explain_ft.csv --split train
      radlens correlate emb.h5 radiomics.h5 -o - | radlens info -
    """
    correlate(embeddings, radiomics, output, method=method, threshold=threshold, alpha=alpha,
              split=split, allow_missing=allow_missing, pairs=pairs, explain=explain,
              explain_top=explain_top, force=force)
