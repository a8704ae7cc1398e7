"""`radlens correlate`: Rad4XCNN correlation maps (CORR.h5, schema correlation/1, see io/formats/correlation.py).

Library: lens.correlate_tables (lens/correlate.py: Spearman maps, p and BH q), io/formats/correlation.py.
"""

from __future__ import annotations

import os
from typing import Optional

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import allow_missing_option, force_option, output_option
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.formats.correlation import write_correlation
from radlens_cli.io.tables import read_table
from radlens_cli.lens import correlate as lc

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
    """Correlate every embedding dimension with every radiomic column (lens.correlate_tables);
    write CORR.h5 (+ CSVs)."""
    lc.check_options(method, threshold, alpha, explain_top)
    _check_outputs({"--output": output, "--pairs": pairs, "--explain": explain}, force)
    emb = read_table(emb_path, "embeddings")
    rad = read_table(rad_path, "radiomics")
    tc = lc.correlate_tables(emb, rad, method, threshold, alpha, split, allow_missing, explain_top,
                             warn=log.warn, info=log.info)
    res, sig = tc.corr, tc.significant
    params = {"method": method, "threshold": threshold, "alpha": alpha, "split": split,
              "allow_missing": allow_missing, "n_cases": res.n_cases}
    attrs = provenance.build("correlate", inputs={"embeddings": emb_path, "radiomics": rad_path},
                             params=params, history=provenance.merged_history(emb.attrs, rad.attrs))
    attrs.update({"method": method, "threshold": threshold, "alpha": alpha, "n_cases": res.n_cases})
    provenance.declare("correlate", inputs={"embeddings": emb_path, "radiomics": rad_path},
                       params=params, history=provenance.merged_history(emb.attrs, rad.attrs))
    # CSVs first: `-o -` streams the HDF5 last, after every other output is in place
    if pairs:
        write_csv(tc.pairs_table(), pairs, force)
    if explain:
        write_csv(tc.explanation_table(), explain, force)
    write_correlation(output, res.rho, res.p, res.q, tc.deep, tc.columns, tc.meta, res.keep_x, res.keep_y,
                      res.reason_x, res.reason_y, tc.case_id, attrs, force)
    return {"n_cases": res.n_cases, "n_pairs": int(sig.sum()), "n_deep_explained": int(sig.any(axis=1).sum())}


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
