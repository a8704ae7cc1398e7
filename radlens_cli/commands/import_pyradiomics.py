"""`radlens import-pyradiomics`: PyRadiomics batch CSV output -> a radlens case table.

Library: radiomics/imported.py.
"""

from __future__ import annotations

from typing import Optional

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, output_option
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.manifest import derive_split, read_manifest
from radlens_cli.io.tables import CaseTable, table_format, write_table
from radlens_cli.radiomics.imported import read_batch

NAME = "import-pyradiomics"


def parse_sources(items: list[str], modality_column: str | None) -> list[tuple[str, str]]:
    """`t2=batch_t2.csv` pairs; with a modality column, one plain path."""
    if modality_column:
        if len(items) != 1 or "=" in items[0]:
            raise UsageError("with --modality-column give one CSV path (its rows carry their modality)")
        return [("", items[0])]
    out = []
    for item in items:
        mod, sep, path = item.partition("=")
        if not sep or not mod or not path:
            raise UsageError(f"{item!r}: give MODALITY=FILE, e.g. t2=batch_t2.csv (or use --modality-column)")
        out.append((mod.strip(), path))
    if len({m for m, _ in out}) != len(out):
        raise UsageError("a modality is given twice")
    return out


def import_pyradiomics(sources: list[tuple[str, str]], output: str, force: bool = False,
                       id_column: str | None = None, modality_column: str | None = None,
                       manifest: str | None = None, split_seed: int = 0):
    """Write the case table; returns it."""
    import json

    import numpy as np

    check_output(output, force)
    table_format(output)
    case_ids, values, columns, diagnostics, meta = read_batch(sources, id_column, modality_column)
    if manifest:
        man = read_manifest(manifest, split_seed)
        pos = {c: i for i, c in enumerate(man.case_ids)}
        missing = [c for c in case_ids if c not in pos]
        if missing:
            raise UsageError(f"{manifest}: no row for case(s) {', '.join(missing[:5])}"
                             + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        split = man.split[[pos[c] for c in case_ids]]
        split_how = "manifest" if not man.split_derived else "derived 7:1:2 from case_id hash"
    else:
        split = derive_split(case_ids, split_seed)
        split_how = "derived 7:1:2 from case_id hash"
    table = CaseTable(case_id=case_ids, values=values, columns=columns, split=np.asarray(split, dtype=object),
                      column_meta=meta)
    inputs = {f"pyradiomics_{m or 'all'}": p for m, p in sources}
    if manifest:
        inputs["manifest"] = manifest
    mods = sorted({c.split("/")[0] for c in columns}, key=[c.split("/")[0] for c in columns].index)
    attrs = provenance.build(NAME, inputs=inputs, params={
        "extraction": {"source": "PyRadiomics batch CSV", "modalities": mods},
        "id_column": id_column, "modality_column": modality_column, "split": split_how,
        "split_seed": split_seed})
    attrs["failures"] = json.dumps([])
    write_table(table, output, force, attrs=attrs, extra={"diagnostics": diagnostics})
    log.info(f"wrote {table.n_cases} case(s) x {len(columns)} feature(s) of {', '.join(mods)} to {output}")
    return table


@command(NAME)
def import_pyradiomics_cli(
    csvs: list[str] = typer.Argument(..., help="MODALITY=FILE per PyRadiomics batch CSV (e.g. t2=t2.csv "
                                               "adc=adc.csv), or one FILE with --modality-column."),
    output: str = output_option("Case table (.h5 keeps the diagnostics; .csv, .tsv, .csv.gz)."),
    id_column: Optional[str] = typer.Option(None, "--id-column", help="The column naming the case "
                                            "[default: the first of case_id, ID, PatientID, Patient ...]."),
    modality_column: Optional[str] = typer.Option(None, "--modality-column", help="One CSV for every "
                                                  "modality, this column saying which."),
    manifest: Optional[str] = typer.Option(None, "--manifest", help="Cohort manifest whose split column "
                                           "to copy [default: derive 7:1:2 from a hash of case_id]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the derived split."),
    force: bool = force_option(),
):
    """PyRadiomics batch CSV output as a case table.

    Reads what `pyradiomics cases.csv -o out.csv -f csv` writes: the input columns
    (Image, Mask, an id column), `diagnostics_*` columns and one column per feature
    (original_firstorder_Mean, ...). Features become `<modality>/<feature>` columns with
    their metadata; every other column (paths, diagnostics, versions, settings) is kept
    per case in the `diagnostics` dataset, as extract-radiomics keeps its own. Every case
    must have a row for every modality.

    Examples:

    \b
      radlens import-pyradiomics t2=pyrad_t2.csv adc=pyrad_adc.csv --id-column ID -o radiomics.h5
      radlens import-pyradiomics all.csv --modality-column Sequence --manifest cohort.csv -o radiomics.h5
    """
    import_pyradiomics(parse_sources(csvs, modality_column), output, force=force, id_column=id_column,
                       modality_column=modality_column, manifest=manifest, split_seed=seed)
