"""`radlens perturb`: perturbed or negative-control copies of a cohort, for stability analysis.

Library: io/perturb.py (the perturbations, negative controls and the cohort writer).
"""

from __future__ import annotations

import json
import os
from typing import Optional

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, jobs_option, mask_option, modalities_option, seed_option
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io import perturb as pt
from radlens_cli.io.files import atomic_folder, atomic_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.manifest import parse_mask_spec, read_manifest
from radlens_cli.names import parse_list


def perturb(manifest_path: str, out_dir: str, modalities: str, mask: str, masks: str | None = None,
            perturbations: str | None = None, rotation: float | None = None, translation: float | None = None,
            noise: float | None = None, contour: int | None = None, negative_control: str | None = None,
            replicates: int = 5, include_original: bool = False, seed: int = 0, force: bool = False,
            jobs: int = 1, keep_histogram: bool | None = None) -> dict:
    """Write the perturbed cohort (images, masks, cohort.csv, provenance.json) to out_dir."""
    if out_dir == "-":
        raise UsageError("a cohort is a folder of images: give its path, not - (stdout)")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise RadlensError(f"output is a file, not a folder: {out_dir}")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not force:
        raise RadlensError(f"output folder is not empty: {out_dir} (use --force to replace it)")
    parent = os.path.dirname(os.path.abspath(out_dir))
    if not os.path.isdir(parent):
        raise RadlensError(f"output folder's parent does not exist: {parent}")
    chosen, settings = pt.choose_perturbations(perturbations, rotation, translation, noise, contour,
                                               negative_control, keep_histogram)
    roi = parse_mask_spec(mask)
    other = parse_list(masks, "masks") if masks else []
    mods = parse_list(modalities, "modalities")
    man = read_manifest(manifest_path)
    with atomic_folder(out_dir) as tmp:
        frame = pt.perturb_cohort(man, tmp, mods, roi, other, settings, replicates, include_original, seed,
                                  progress=lambda it: log.progress(it, desc="perturb", unit="case"),
                                  warn=log.warn, jobs=jobs)
        params = {"modalities": mods, "mask": str(roi), "masks": other, "perturbations": chosen,
                  **pt.settings_record(settings), "replicates": replicates, "include_original": include_original,
                  "seed": seed, "split_derived": man.split_derived}
        attrs = provenance.build("perturb", inputs={"manifest": manifest_path}, params=params)
        write_csv(frame, os.path.join(tmp, "cohort.csv"), force=True, provenance=attrs, lineterminator="\n")
        prov = {k: (json.loads(v) if k in ("inputs", "params", "versions", "history") else v)
                for k, v in attrs.items()}
        with atomic_output(os.path.join(tmp, "provenance.json"), force=True, suffix=".json") as p:
            with open(p, "w", encoding="utf-8") as fh:
                json.dump(prov, fh, indent=2, sort_keys=True)
                fh.write("\n")
    return {"rows": len(frame), "cases": len(man), "manifest": os.path.join(out_dir, "cohort.csv")}


@command("perturb")
def perturb_cli(
    manifest: str = typer.Argument(..., help="Cohort manifest CSV."),
    output: str = typer.Option(..., "--output", "-o", metavar="DIR",
                               help="Output folder (created; an existing non-empty one is replaced with --force)."),
    modalities: str = modalities_option("Image columns to perturb, comma-separated."),
    mask: str = mask_option("The ROI: a mask column, optionally with labels (zones:1+2). Rotation turns about "
                            "its centre, contour randomisation and the -roi negative controls act on it."),
    masks: Optional[str] = typer.Option(None, "--masks", help="More mask columns to carry along (moved with the "
                                        "images, not randomised), comma-separated."),
    perturbations: Optional[str] = typer.Option(None, "--perturbations",
                                                help="Which to apply: any of rotation,translation,noise,contour, "
                                                     "or none [default: all four; none with --negative-control]."),
    rotation: Optional[float] = typer.Option(None, "--rotation", metavar="DEG",
                                             help="Largest rotation about the slice normal, degrees; each "
                                                  "replicate draws uniformly in [-DEG, DEG]. [default: 10]"),
    translation: Optional[float] = typer.Option(None, "--translation", metavar="VOXELS",
                                                help="Largest shift per axis in voxels of the first image; "
                                                     "uniform in [-V, V]. [default: 0.5]"),
    noise: Optional[float] = typer.Option(None, "--noise", metavar="FRACTION",
                                          help="Added Gaussian noise sd as a fraction of the image's own "
                                               "estimated noise sd (recorded per row). [default: 1.0]"),
    contour: Optional[int] = typer.Option(None, "--contour", metavar="VOXELS",
                                          help="Dilate or erode the ROI in-plane by 1..VOXELS voxels "
                                               "(sign at random). [default: 1]"),
    keep_histogram: Optional[bool] = typer.Option(None, "--keep-histogram/--resampled-histogram",
                                                  help="After a rotation or translation, give the resampled voxels the "
                                                       "original image's values by rank (the histogram kept exactly; "
                                                       "recorded as histogram_matched), or keep the B-spline's "
                                                       "resampled values (0.4.0: interpolation smooths the noise and "
                                                       "narrows the histogram). Only with rotation or translation. "
                                                       "[default: keep]"),
    negative_control: Optional[str] = typer.Option(None, "--negative-control",
                                                   help="READII negative control: shuffled-roi, randomized-roi, "
                                                        "shuffled-full or randomized-full."),
    replicates: int = typer.Option(5, "--replicates", min=1, help="Perturbed replicates per case."),
    include_original: bool = typer.Option(False, "--include-original",
                                          help="Also write each unperturbed case as replicate 0 (<case_id>_r0)."),
    seed: int = seed_option(),
    jobs: int = jobs_option(help="Worker processes, one case each at a time (the output is the same for any "
                                 "number)."),
    force: bool = force_option(),
):
    """Write perturbed or negative-control copies of a cohort.

    For each case and replicate k (1..N) writes the image and mask columns as NIfTI on
    each file's own grid under OUTPUT/<case_id>_r<k>/, and OUTPUT/cohort.csv: case_id
    <case_id>_r<k>, subject (the original case_id), split, replicate, the image and
    mask columns, the manifest's other columns, and what was applied: rotation_deg,
    translation_{x,y,z}_vox, histogram_matched, contour_voxels, noise_sd_<modality> (the image's
    estimated noise sd), noise_added_sd_<modality> and negative_control. Provenance in
    OUTPUT/provenance.json. The same seed gives the same files.

    Perturbations after Zwanenburg et al. (Sci Rep 2019), combinable: a rotation about
    the slice normal through the ROI centre and a sub-voxel translation (one rigid
    transform, images by B-spline then mapped by rank onto their original values so the
    histogram is kept, masks label by label at a 0.5 share), additive
    Gaussian noise at a fraction of the image's noise level (estimated from the finest
    Haar diagonal coefficients, Chang et al. 2000), and contour randomisation (the ROI
    dilated or eroded in-plane). A strength of 0 writes the input's voxels unchanged.
    Negative controls after READII: ROI or whole-image voxels shuffled (histogram kept,
    texture destroyed) or replaced by uniform random values between their minimum and
    maximum. Measure stability with extract-radiomics (or embed) on the copy, then
    `radlens stability ... --group subject`. -j N perturbs N cases at a time in worker
    processes (a worker that dies is retried once in a fresh one); the files are the same.

    Examples:

    \b
      radlens perturb cohort.csv --modalities t2,adc --mask gland -o pert --replicates 5
      radlens perturb cohort.csv --modalities t2 --mask gland --perturbations noise --noise 0.5 -o noisy
      radlens perturb cohort.csv --modalities t2,adc --mask gland --negative-control shuffled-roi \\
          --replicates 1 -o control
    """
    summary = perturb(manifest, output, modalities, mask, masks, perturbations, rotation, translation, noise,
                      contour, negative_control, replicates, include_original, seed, force, jobs, keep_histogram)
    log.info(f"perturb: wrote {summary['rows']} replicate(s) of {summary['cases']} case(s) to {summary['manifest']}")
