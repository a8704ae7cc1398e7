"""`radlens merge`: join extract-radiomics parts (e.g. SLURM array tasks) by case_id."""

from __future__ import annotations

import typer

from radlens_cli import log
from radlens_cli.commands._util import command, force_option, output_option
from radlens_cli.errors import UsageError


def merge(paths: list[str], output: str, force: bool = False, allow_incomplete: bool = False):
    """Merge part tables into `output`; returns the merged CaseTable."""
    import json

    from radlens_cli import provenance
    from radlens_cli.io.files import check_output
    from radlens_cli.io.tables import write_table
    from radlens_cli.radiomics.merge import merge_parts, read_part

    if not paths:
        raise UsageError("give at least one part")
    if paths.count("-") > 1:
        raise UsageError("stdin (`-`) can be only one of the parts")
    check_output(output, force)
    parts = [read_part(p) for p in paths]
    table, diagnostics, summary = merge_parts(parts, allow_incomplete)
    attrs = provenance.build(
        "merge", inputs={f"part{i}": p for i, p in enumerate(paths)},
        params={"extraction": summary["extraction"], "parts": summary["parts"],
                "allow_incomplete": allow_incomplete},
        history=provenance.merged_history(*[p.table.attrs for p in parts]))
    attrs["failures"] = json.dumps(summary["failures"])
    attrs["skipped"] = json.dumps(summary["skipped"])
    write_table(table, output, force, attrs=attrs,
                extra={"diagnostics": diagnostics} if diagnostics is not None else None)
    log.info(f"merged {len(parts)} part(s): {table.n_cases} case(s) x {len(table.columns)} column(s)")
    if summary["failures"]:
        log.warn(f"{len({f['case_id'] for f in summary['failures']})} case(s) failed in the parts; "
                 f"listed in the output's `failures` attribute (radlens info --json {output})")
    return table


@command("merge")
def merge_cli(
    parts: list[str] = typer.Argument(..., help="Part tables written by extract-radiomics (HDF5; one may be `-`)."),
    output: str = output_option("Merged case table (.h5, .csv, or `-` for HDF5 on stdout)."),
    force: bool = force_option(),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Merge even when some parts of "
                                          "the --num-parts run are missing."),
):
    """Join extract-radiomics parts by case_id into one table.

    Reads the parts of a sharded run (--part-id/--num-parts, e.g. one per SLURM array
    task) and writes one case table with rows sorted by case_id. Refuses parts with a
    case_id in common, parts extracted with other parameters (params file, modalities,
    mask, resampling), parts with other columns, and a run with parts missing. The
    parts' failure lists and diagnostics are carried over.

    Examples:

    \b
      radlens merge parts/radiomics-*.h5 -o radiomics.h5
      radlens merge part0.h5 part1.h5 part2.h5 --allow-incomplete -o partial.h5
    """
    merge(parts, output, force=force, allow_incomplete=allow_incomplete)
