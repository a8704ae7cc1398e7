"""`radlens merge`: join the parts of a sharded run (e.g. SLURM array tasks) by case_id.

Library: radiomics/merge.py (parts that belong together), io/cases.py.
"""

from __future__ import annotations

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, output_option
from radlens_cli.errors import UsageError
from radlens_cli.io.cases import PART_ATTR, warn_partial
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.tables import table_format, write_table
from radlens_cli.radiomics.merge import merge_parts, read_part
from radlens_cli.saliency.tables import SALIENCY_SCHEMA, is_saliency_table, merge_saliency


def merge(paths: list[str], output: str, force: bool = False, allow_incomplete: bool = False):
    """Merge part tables into `output`; returns the merged CaseTable."""
    import json

    if not paths:
        raise UsageError("give at least one part")
    if paths.count("-") > 1:
        raise UsageError("stdin (`-`) can be only one of the parts")
    check_output(output, force)
    if any(is_saliency_table(p) for p in paths):  # saliency.csv parts: rows per case and map
        return _merge_saliency(paths, output, force, allow_incomplete)
    table_format(output)
    parts = [read_part(p) for p in paths]
    table, diagnostics, summary = merge_parts(parts, allow_incomplete)
    params = dict(summary["params"])
    if "case_inputs" in params:  # embed records them in params: every part's cases, not the first's
        params["case_inputs"] = summary["case_inputs"]
    params.update({"parts": summary["parts"], "merged_from": summary["subcommand"],
                   "allow_incomplete": allow_incomplete})
    attrs = provenance.build(
        "merge", inputs={f"part{i}": p for i, p in enumerate(paths)}, params=params,
        history=provenance.merged_history(*[p.table.attrs for p in parts]))
    if summary["manifest"]:  # the manifest the parts were made from, so a merge of merges checks it too
        inputs = json.loads(attrs["inputs"])
        inputs["manifest"] = summary["manifest"]
        attrs["inputs"] = json.dumps(inputs, sort_keys=True)
    if summary["case_inputs"] and "case_inputs" not in params:  # extract-radiomics: an attribute
        attrs["case_inputs"] = json.dumps(summary["case_inputs"], sort_keys=True)
    attrs["failures"] = json.dumps(summary["failures"])
    attrs["skipped"] = json.dumps(summary["skipped"])
    if summary["incomplete"]:
        attrs[PART_ATTR] = json.dumps(summary["incomplete"])
    write_table(table, output, force, attrs=attrs,
                extra={"diagnostics": diagnostics} if diagnostics is not None else None)
    log.info(f"merged {len(parts)} part(s): {table.n_cases} case(s) x {len(table.columns)} column(s)")
    if summary["incomplete"]:
        log.warn(f"{output}: part(s) {', '.join(map(str, summary['incomplete']['missing']))} of "
                 f"{summary['incomplete']['num_parts']} missing; readers will say so")
    warn_partial(summary["failures"], table.n_cases, output, None)
    return table


def _merge_saliency(paths: list[str], output: str, force: bool, allow_incomplete: bool):
    import json

    if not all(is_saliency_table(p) for p in paths):
        raise UsageError("merge saliency tables only with saliency tables (each with its .json sidecar)")
    if not output.lower().endswith((".csv", ".tsv")) and output != "-":
        raise UsageError(f"{output}: merged saliency tables are .csv or .tsv")
    df, params, failures, incomplete = merge_saliency(paths, allow_incomplete)
    params.update({"merged_from": "saliency", "allow_incomplete": allow_incomplete})
    attrs = provenance.build("merge", inputs={f"part{i}": p for i, p in enumerate(paths)}, params=params)
    attrs["radlens_schema"] = SALIENCY_SCHEMA
    attrs["failures"] = json.dumps(failures)
    if incomplete:
        attrs[PART_ATTR] = json.dumps(incomplete)
    write_csv(df, output, force, provenance=attrs, float_format="%.8g",
              sep="\t" if output.lower().endswith(".tsv") else ",")
    log.info(f"merged {len(paths)} saliency part(s): {df['case_id'].nunique()} case(s), {len(df)} row(s)")
    return df


@command("merge")
def merge_cli(
    parts: list[str] = typer.Argument(..., help="Part tables written by extract-radiomics, embed or saliency "
                                      "(HDF5, or CSV with its .json sidecar; one may be `-`)."),
    output: str = output_option("Merged case table (.h5, .csv, or `-` for HDF5 on stdout)."),
    force: bool = force_option(),
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete", help="Merge even when some parts of "
                                          "the --num-parts run are missing."),
):
    """Join the parts of a sharded run by case_id.

    Reads the parts of an extract-radiomics or embed run (--parts slurm or
    --part-id/--num-parts, e.g. one per SLURM array task) and writes one case table
    with rows sorted by case_id. Checks that the parts belong together and names what
    differs: the command that wrote them, the manifest (sha256), the parameters
    (radiomics params and resampling; encoder fingerprint, layer, pooling,
    preprocessing), the columns; every part must be present exactly once (an empty
    part, from a task with no case, counts). The merged file keeps the parameters, the
    parts' histories, failure lists and diagnostics.

    Examples:

    \b
      radlens merge parts/radiomics-*.h5 -o radiomics.h5
      radlens merge part0.h5 part1.h5 part2.h5 --allow-incomplete -o partial.h5
    """
    merge(parts, output, force=force, allow_incomplete=allow_incomplete)
