"""`radlens stability`: per-column ICC(1,1) over the perturbed replicates of each subject.

Library: lens/stability.py (ICC, its interval, the min-ICC filter).
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
from radlens_cli.io.manifest import read_manifest
from radlens_cli.io.tables import read_table, text_column
from radlens_cli.lens import stability as ls


def subject_groups(table_path: str, case_id, group: str, manifest: str | None = None) -> tuple[np.ndarray, str]:
    """Each case's group label: TABLE's own `group` column (a CSV case table), else the
    manifest's joined on case_id. Returns (labels, where they came from)."""
    own = text_column(table_path, group)
    if own is not None:
        lookup = dict(zip(own[0], own[1]))
        where = f"{table_path} column {group}"
    else:
        if not manifest:
            raise UsageError(f"{'stdin' if table_path == '-' else table_path} has no `{group}` column; give "
                             f"--manifest (the perturbed cohort.csv) to join {group} on case_id")
        man = read_manifest(manifest)
        man.require_columns([group], "--group")
        lookup = dict(zip(man.frame["case_id"], man.frame[group].astype(str).str.strip()))
        where = f"{manifest} column {group}"
    missing = [c for c in case_id if c not in lookup]
    if missing:
        more = f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""
        raise RadlensError(f"{len(missing)} case(s) have no {group} in {where}: {', '.join(missing[:5])}{more}")
    labels = np.array([lookup[c] for c in case_id], dtype=object)
    empty = [c for c, v in zip(case_id, labels) if not str(v)]
    if empty:
        raise RadlensError(f"empty {group} for case(s) {', '.join(empty[:5])} in {where}")
    return labels, where


def stability(table_path: str, output: str, group: str = "subject", manifest: str | None = None,
              level: float = 0.95, force: bool = False):
    """Write ICC.csv (column, icc, ci_low, ci_high, n_subjects, n_replicates); returns the DataFrame."""
    if not 0 < level < 1:
        raise UsageError(f"--ci-level {level}: must lie in (0, 1)")
    check_output(output, force)
    table = read_table(table_path, "case table", drop=(group,))
    labels, where = subject_groups(table_path, table.case_id, group, manifest)
    sizes = np.unique(labels.astype(str), return_counts=True)[1]
    if (sizes < 2).all():
        raise RadlensError(f"every {group} in {where} has one case: nothing to measure stability on "
                           f"(perturb with --replicates 2 or more)")
    if len(sizes) < 2:
        raise RadlensError(f"one {group} only in {where}: ICC needs at least 2 subjects")
    out = ls.icc_table(table.values, table.columns, labels, level)
    n_nan = int(out["icc"].isna().sum())
    if n_nan:
        log.warn(f"stability: {n_nan} column(s) constant over every case: ICC undefined (written empty), "
                 f"e.g. {', '.join(out.loc[out['icc'].isna(), 'column'][:3])}")
    if not np.isfinite(table.values).all():
        log.warn("stability: non-finite values are left out of their column's ICC")
    log.info(f"stability: {len(sizes)} subjects, {len(labels)} cases, {len(out)} columns; median ICC "
             f"{np.nanmedian(out['icc']) if len(out) > n_nan else float('nan'):.3f}, "
             f"{int((out['icc'] >= 0.75).sum())} with ICC >= 0.75")
    params = {"group": group, "group_from": where, "ci_level": level, "form": ls.ICC_FORM,
              "n_subjects": int(len(sizes)), "n_cases": int(len(labels))}
    attrs = provenance.build("stability", inputs={"table": table_path, "manifest": manifest}, params=params,
                             history=provenance.merged_history(table.attrs))
    write_csv(out, output, force, provenance=attrs, float_format="%.12g")
    return out


@command("stability")
def stability_cli(
    table: str = typer.Argument(..., help="Radiomics or embeddings of the replicates (HDF5/CSV case table; "
                                "`-` for stdin)."),
    output: str = output_option("ICC table CSV (`-` for stdout)."),
    group: str = typer.Option("subject", "--group", help="The column naming each case's subject: TABLE's own "
                              "(a CSV case table) or the --manifest's."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="Manifest holding --group, joined on case_id "
                                           "(the cohort.csv `radlens perturb` wrote)."),
    level: float = typer.Option(0.95, "--ci-level", help="Confidence level of the interval."),
    force: bool = force_option(),
):
    """Per-feature ICC(1,1) over perturbed replicates.

    Groups TABLE's cases by subject and writes, per column, the intraclass correlation
    ICC(1,1) (one-way random effects, single measurement: the replicates of a subject
    are exchangeable, there is no rater) with its F-based confidence interval (McGraw &
    Wong 1996), the number of subjects and of replicates per subject (k0 when subjects
    have unequal counts):

    \b
      column,icc,ci_low,ci_high,n_subjects,n_replicates

    A column's non-finite values are left out of its ICC; a column constant over every
    case has no ICC (empty). Use the table with compare, stats and report
    (--stability icc.csv --min-icc 0.75) to keep findings to stable features.

    Examples:

    \b
      radlens perturb cohort.csv --modalities t2,adc --mask gland -o pert --replicates 5
      radlens extract-radiomics pert/cohort.csv --modalities t2,adc --mask gland --params quick \\
          -o rad_pert.h5
      radlens stability rad_pert.h5 --manifest pert/cohort.csv -o icc.csv
      radlens stability features.csv --group patient -o - | sort -t, -k2 -g | head
    """
    stability(table, output, group, manifest, level, force)
