"""`radlens extract-radiomics`: PyRadiomics features for every (case, modality) of a cohort.

Library: radiomics.extract_cohort (radiomics/batch.py: the pool, cache, failures), radiomics/extract.py, radiomics/params.py.
"""

from __future__ import annotations

import json
from typing import Optional

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (force_option, jobs_option, keep_going_option, mask_option,
                                          modalities_option, num_parts_option, output_option, part_id_option,
                                          parts_option, strict_geometry_option)
from radlens_cli.errors import ParameterError, RadlensError
from radlens_cli.io.runs import CohortRun
from radlens_cli.io.tables import write_table
from radlens_cli.names import parse_list
from radlens_cli.radiomics.batch import extract_cohort
from radlens_cli.radiomics.params import preset_text

NAME = "extract-radiomics"


def extract_radiomics(manifest_path: str, modalities: list[str], mask: str, params_path: str, output: str,
                      force: bool = False, jobs: int = 1, part_id: int | None = None,
                      num_parts: int | None = None, cache_dir: str | None = None, parts: str | None = None,
                      failures_path: str | None = None, keep_going: bool = False,
                      reference_modality: str | None = None, resample_mask: bool = True,
                      empty_mask: str = "fail", max_outside: float = 0.01, split_seed: int = 0,
                      strict_geometry: bool = False):
    """Extract features for a cohort (radiomics.extract_cohort) and write the case table;
    returns the CohortExtraction.

    When cases failed: without keep_going raises RadlensError and writes no table (the
    cache keeps finished cases); with it writes the others, records the failures, warns.
    """
    run = CohortRun.start(output, parts, part_id, num_parts, failures_path, keep_going, force, bool(cache_dir))
    ext = extract_cohort(manifest_path, modalities, mask, params_path, jobs=jobs,
                         part=(run.part_id, run.num_parts), cache_dir=cache_dir,
                         reference_modality=reference_modality, resample_mask=resample_mask,
                         empty_mask=empty_mask, max_outside=max_outside, split_seed=split_seed,
                         strict_geometry=strict_geometry, name=NAME)
    run.finish(ext.failures, ext.n_tried, ext.table.n_cases)
    if not ext.n_tried:  # an empty part of an array: nothing to do, an empty part for merge
        log.info(f"nothing to do: part {run.part_id} of {run.num_parts} holds no case; writing an empty part")
    attrs = provenance.build(
        NAME, inputs={"manifest": manifest_path, "params": ext.params_path},
        params={"extraction": ext.settings, "part_id": run.part_id, "num_parts": run.num_parts,
                "split": "derived 7:1:2 from case_id hash" if ext.manifest.split_derived else "manifest",
                "split_seed": split_seed, "jobs": jobs, "cache_dir": cache_dir, "keep_going": keep_going})
    run.record(attrs, ext.failures, skipped=json.dumps(ext.skipped),
               case_inputs=json.dumps(ext.inputs, sort_keys=True))  # DICOM UIDs, segments, geometry warnings
    write_table(ext.table, output, force, attrs=attrs, extra={"diagnostics": ext.diagnostics})
    log.info(f"wrote {ext.table.n_cases} case(s) x {len(ext.table.columns)} feature(s) to {output}")
    run.done(ext.failures, ext.table.n_cases)
    return ext


def _print_preset(value: Optional[str]):
    if value is not None:
        try:
            typer.echo(preset_text(value), nl=False)
        except RadlensError as e:
            raise typer.BadParameter(e.flagged() if isinstance(e, ParameterError) else str(e),
                                     param_hint="--print-params") from None
        raise typer.Exit()


@command(NAME)
def extract_radiomics_cli(
    manifest: str = typer.Argument(..., help="Cohort manifest CSV (case_id, image and mask path columns, "
                                             "optional split); relative paths resolve against its folder."),
    modalities: str = modalities_option("Comma-separated image columns to extract, e.g. t2,adc,dwi (column order of the output)."),
    mask: str = mask_option("Mask column, optionally with labels: gland (every non-zero voxel), zones:1 (one label), "
                            "zones:1+2 (a union); DICOM-SEG/RTSTRUCT segments by name: seg:prostate, rt:PZ+TZ, "
                            "seg:#2."),
    params: str = typer.Option(..., "--params", help="PyRadiomics parameters: a preset, `paper` (the Radiomic "
                               "Lens configuration, 837 features per modality) or `quick` (93), or a YAML file; "
                               "a value naming an existing file is that file."),
    print_params: Optional[str] = typer.Option(None, "--print-params", metavar="PRESET", is_eager=True,
                                               callback=_print_preset, expose_value=False,
                                               help="Print a preset's YAML (paper, quick) to stdout and exit: "
                                                    "a start for your own configuration."),
    output: str = output_option("Output case table: .h5 (with column metadata and diagnostics) or .csv; "
                                "`-` writes HDF5 to stdout."),
    force: bool = force_option(),
    jobs: int = jobs_option(),
    parts: Optional[str] = parts_option(),
    part_id: Optional[int] = part_id_option(),
    num_parts: Optional[int] = num_parts_option(),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Folder with one small file per finished "
                                            "(case, modality); a rerun redoes only what is missing. "
                                            "Keyed by case_id and sha256 of image, mask and params."),
    failures: Optional[str] = typer.Option(None, "--failures", help="Also write the failed and skipped "
                                           "(case, modality) as CSV: case_id, modality, path, reason, status."),
    keep_going: bool = keep_going_option(),
    reference_modality: Optional[str] = typer.Option(None, "--reference-modality", help="Resample every other "
                                                     "sequence (B-spline) and the mask (nearest) onto this "
                                                     "modality's grid [default: the mask goes onto each "
                                                     "sequence's own grid]."),
    resample_mask: bool = typer.Option(True, "--resample-mask/--no-resample-mask", help="Resample a mask on "
                                       "another grid (nearest neighbour, physical space); with --no-resample-mask "
                                       "any grid difference is a geometry-mismatch failure."),
    empty_mask: str = typer.Option("fail", "--empty-mask", help="A case whose mask has no voxel: skip (left out, "
                                   "listed) or fail."),
    max_outside: float = typer.Option(0.01, "--max-outside", help="Largest fraction of the ROI allowed outside "
                                      "an image's field of view before it is a geometry mismatch."),
    seed: int = typer.Option(0, "--seed", help="Seed of the derived 7:1:2 split when the manifest has no split "
                                               "column."),
    strict_geometry: bool = strict_geometry_option(),
):
    """PyRadiomics features per case and modality.

    Reads a cohort manifest and PyRadiomics parameters; writes one row per case with
    columns `<modality>/<feature>` (e.g. t2/wavelet-LLH_glcm_Correlation), the split, and
    per-column metadata (modality, image_type, family, feature). PyRadiomics' diagnostics
    and the resampling choice go into the output's provenance.

    A failing (case, modality) -- missing or unreadable file, empty mask, absent label,
    mask outside the image -- is reported in one line and the batch goes on; failed
    cases are left out of the table (never written as empty values) and listed in the
    output's `failures` attribute and in --failures. When some failed: exit 1 and no
    output (the --cache-dir keeps finished cases, so the rerun does only the rest); with
    --keep-going the others are written, a warning counts the failures, exit 0.

    --params takes a preset (paper, quick) or a YAML file; `--print-params paper` prints a
    preset to start your own file from.

    For a SLURM array, give --parts slurm (or --part-id/--num-parts): the task does
    every num-parts-th case (sorted by case_id) and `radlens merge` joins the parts. A
    task with no case exits 0 and writes an empty part.

    Examples:

    \b
      radlens extract-radiomics cohort.csv --modalities t2,adc,dwi --mask gland \\
          --params paper -j 8 --cache-dir cache -o radiomics.h5
      radlens extract-radiomics cohort.csv --modalities t2,adc --mask zones:1+2 \\
          --reference-modality t2 --params quick -o quick.h5
    """
    extract_radiomics(manifest, parse_list(modalities, "modalities"), mask, params, output, force=force,
                      jobs=jobs, part_id=part_id, num_parts=num_parts, parts=parts, cache_dir=cache_dir,
                      failures_path=failures, keep_going=keep_going, reference_modality=reference_modality,
                      resample_mask=resample_mask, empty_mask=empty_mask, max_outside=max_outside,
                      split_seed=seed, strict_geometry=strict_geometry)
