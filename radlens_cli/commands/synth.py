"""`radlens synth`: a phantom mpMRI prostate cohort to try radlens without data.

Library: synth/phantom.py.
"""

from __future__ import annotations

import json
import os

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import parse_triple, seed_option
from radlens_cli.errors import UsageError
from radlens_cli.io.files import atomic_output
from radlens_cli.synth import phantom


def synth(out_dir: str, cases: int = 120, seed: int = 0, size=None, spacing=None,
          scanner: bool = False, force: bool = False, texture: bool = False) -> dict:
    """Write the phantom cohort and a provenance.json beside its manifest; returns a summary."""
    size = tuple(size or phantom.DEFAULT_SIZE)
    spacing = tuple(spacing or phantom.DEFAULT_SPACING)
    if out_dir == "-":  # `-` means stdout everywhere else; a cohort is a folder, not a stream
        raise UsageError("a cohort is a folder of images: give its path, not - (stdout)")
    phantom.check_out_dir(out_dir, force)
    os.makedirs(out_dir, exist_ok=True)
    # the manifest CSV's sidecar records how the cohort was made
    # texture is recorded only when asked for: the other cohorts' provenance stays as it was
    params = {"cases": cases, "seed": seed, "size": list(size), "spacing": list(spacing), "scanner": scanner,
              **({"texture": True} if texture else {})}
    provenance.declare("synth", params=params)
    summary = phantom.write_cohort(out_dir, cases, seed, size, spacing, scanner,
                                   progress=lambda it: log.progress(it, desc="synth", unit="case"), texture=texture)
    attrs = provenance.build("synth", params=params, hash_inputs=False)
    prov = {k: (json.loads(v) if k in ("inputs", "params", "versions", "history") else v) for k, v in attrs.items()}
    prov["summary"] = {k: v for k, v in summary.items() if k != "manifest"}
    with atomic_output(os.path.join(out_dir, "provenance.json"), force=True, suffix=".json") as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(prov, fh, indent=2, sort_keys=True)
            fh.write("\n")
    return summary


@command("synth")
def synth_cli(
    output: str = typer.Option(..., "--output", "-o", metavar="DIR", help="Output folder (created; must be empty unless --force)."),
    cases: int = typer.Option(120, "--cases", metavar="N", min=1, help="Number of patients."),
    seed: int = seed_option(),
    size: str = typer.Option("64,64,16", "--size", metavar="X,Y,Z", help="T2 grid in voxels, x,y,z."),
    spacing: str = typer.Option("0.5,0.5,3", "--spacing", metavar="X,Y,Z", help="T2 voxel spacing in mm, x,y,z."),
    scanner: bool = typer.Option(False, "--scanner",
                                 help="Write as a scanner does: T2 as a DICOM series folder, ADC/DWI on a "
                                      "coarser grid (about 2x2 mm in-plane) with a smaller field of view, and "
                                      "the segments as DICOM-SEG and RTSTRUCT (manifest columns seg, rtstruct)."),
    texture: bool = typer.Option(False, "--texture",
                                 help="A phantom for negative controls (perturb --negative-control): each "
                                      "gland gets a spatial texture whose scale is the case's latent, a Gaussian "
                                      "random field with its own in-plane correlation length (0.25-5 mm, "
                                      "log-uniform; manifest column texture_mm), standardised inside the gland so "
                                      "the gland's histogram does not carry it; glands of nearly one size and zone "
                                      "mix, without lesions, so nothing else stands in for the texture. "
                                      "docs/stability.md."),
    force: bool = typer.Option(False, "--force", "-f", help="Write into a non-empty output folder, "
                                                             "replacing the files of the same name."),
):
    """Write a phantom mpMRI cohort to try radlens on.

    Per case: T2, high-b DWI and ADC volumes, a gland mask, a zones label map (peripheral
    zone 1, transition zone 2) and a lesion mask (one label per lesion, empty without a
    lesion), as NIfTI under OUTPUT/<case_id>/; and OUTPUT/cohort.csv, the manifest:
    case_id, t2, dwi, adc, gland, zones, lesion (paths relative to the manifest),
    split (7:1:2), gland_volume_ml, pirads (1-5), risk (0-3: PI-RADS <3, 3, 4, 5) and
    n_lesions. The gland is an ellipsoid of random size and shape, each zone with its own
    texture and intensity; lesions are T2-dark, ADC-dark and DWI-bright with varying size
    and conspicuity; noise and a smooth bias field on top. The same seed gives the same
    bytes. --scanner writes the cohort as a scanner would (T2 as DICOM, coarser ADC/DWI)
    and adds the segments Prostate, PZ, TZ and Lesion as a DICOM-SEG (seg.dcm) and an
    RTSTRUCT (rtstruct.dcm) referencing the T2 series: manifest columns seg and rtstruct,
    selected by name (--mask seg:prostate, --mask rtstruct:PZ+TZ).

    Examples:

    \b
      radlens synth -o phantom --cases 120 --seed 0
      radlens synth -o scanner --cases 20 --scanner
      radlens extract-radiomics scanner/cohort.csv --modalities t2,adc --mask seg:prostate \\
          --params quick -o seg.h5
    """
    summary = synth(output, cases, seed, parse_triple(size, "--size", int, positive=True),
                    parse_triple(spacing, "--spacing", positive=True),
                    scanner, force, texture)
    log.info(f"wrote {summary['cases']} cases to {summary['manifest']} (split {summary['split']}, "
             f"risk groups {summary['risk_counts']}, gland {summary['gland_volume_ml'][0]:.2f}-"
             f"{summary['gland_volume_ml'][1]:.2f} ml)")
