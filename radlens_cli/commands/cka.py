"""`radlens cka`: centred kernel alignment between two representations of the same cases.

Library: lens.cka_tables (lens/cka.py: linear and RBF CKA, bootstrap CI).
"""

from __future__ import annotations

from typing import Optional

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, output_option, seed_option
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.tables import read_table
from radlens_cli.lens import cka as lk


def cka(a_path: str, b_path: str, output: str | None = None, kernel: str = "linear",
        debiased: bool = False, sigma: float = 1.0, standardize: bool = False, split: str | None = None,
        bootstrap: int = 0, level: float = 0.95, seed: int = 0, force: bool = False) -> dict:
    """CKA between two case tables on their shared cases (lens.cka_tables; + bootstrap CI); optional CSV."""
    lk.check_options(kernel, sigma, bootstrap, level)
    if bootstrap and not output:
        raise UsageError("--bootstrap needs -o/--output (the interval is written to the CSV)")
    if output:
        check_output(output, force, suffix=".csv")
    ta = read_table(a_path, "first table")
    tb = read_table(b_path, "second table")
    row = {"a": a_path, "b": b_path, **lk.cka_tables(ta, tb, kernel, debiased, sigma, standardize, split,
                                                     bootstrap, level, seed, warn=log.warn, info=log.info)}
    if output:
        import pandas as pd

        provenance.declare("cka", inputs={"a": a_path, "b": b_path},
                           params={k: row[k] for k in ("kernel", "debiased", "sigma", "standardize",
                                                       "split", "n_bootstrap", "level", "seed")},
                           history=provenance.merged_history(ta.attrs, tb.attrs))
        df = pd.DataFrame([row])
        # a CSV's provenance is its `command` column (as in probe's CSV) and its sidecar (inputs
        # with sha256, params: provenance.declare), not a samtools-style "#" line
        df["command"] = provenance.command_line()
        write_csv(df, output, force)
    return row


@command("cka")
def cka_cli(
    a: str = typer.Argument(..., help="First case table: embeddings or radiomics (HDF5/CSV; `-` for stdin)."),
    b: str = typer.Argument(..., help="Second case table (HDF5/CSV; `-` for stdin)."),
    output: Optional[str] = output_option("Also write a one-row CSV (value, cases, CI; `-` for stdout).",
                                          default=None),
    kernel: str = typer.Option("linear", "--kernel", help="linear or rbf (median-distance bandwidth)."),
    debiased: bool = typer.Option(False, "--debiased",
                                  help="Unbiased HSIC (Song et al. 2012) instead of the biased estimator."),
    sigma: float = typer.Option(1.0, "--sigma", help="rbf bandwidth as a multiple of the median distance."),
    standardize: bool = typer.Option(False, "--standardize",
                                     help="z-score every column first (advised when a side is radiomics)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only shared cases of this split."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap replicates over cases for a CI (needs -o)."),
    ci_level: float = typer.Option(0.95, "--ci-level", help="Confidence level of the bootstrap interval."),
    level_alias: Optional[float] = typer.Option(None, "--level", hidden=True, help="Old name of --ci-level."),
    seed: int = seed_option(),
    force: bool = force_option(),
):
    """Centred kernel alignment between two tables.

    Compares two representations of the same cases (two checkpoints' embeddings, or
    embeddings and radiomics) on the cases both tables hold (joined on case_id). Without
    -o it prints the CKA as one number on stdout (the data); 1 means the same geometry up
    to rotation and isotropic scaling. Columns with NaN/inf over the shared cases are
    dropped with a warning. -o writes a one-row CSV with the number of cases and, with
    --bootstrap N, a percentile confidence interval over resampled cases; stdout then
    stays empty and the value is logged to stderr (hidden by -q).

    The linear kernel runs in feature space (memory linear in cases); rbf builds n x n
    Gram matrices.

    Examples:

    \b
      radlens cka emb_pre.h5 emb_ft.h5
      radlens cka emb_pre.h5 emb_ft.h5 --debiased -o cka.csv --bootstrap 200 --ci-level 0.9 --seed 1
      radlens cka emb_ft.h5 radiomics.h5 --standardize --kernel rbf
    """
    row = cka(a, b, output, kernel=kernel, debiased=debiased, sigma=sigma, standardize=standardize,
              split=split, bootstrap=bootstrap,
              level=ci_level if level_alias is None else level_alias, seed=seed, force=force)
    if not output:   # stdout carries data: the number, unless -o took the data elsewhere
        typer.echo(f"{row['cka']:.6f}")
    elif output != "-":
        log.info(f"cka {row['cka']:.6f} ({row['kernel']}{', debiased' if row['debiased'] else ''}, "
                 f"{row['n_cases']} cases) -> {output}")
