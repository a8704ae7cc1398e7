"""`radlens report`: one self-contained HTML file with the paper's tables and figures.

Library: report/ (html.build and check_options, embed_provenance; data.py, figures.py (write_figures), images.py (panel_spec)).
"""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from radlens_cli import __version__, log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (check_inputs, force_option, mask_option, min_icc_option, modalities_option,
                                          output_option, read_icc, spool_stdin, stability_option)
from radlens_cli.encoders.training.finetuned import read_finetune_record
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.files import check_output, write_text
from radlens_cli.report import html
from radlens_cli.report.images import panel_spec
from radlens_cli.report.figures import write_figures


def report(radiomics: str, compare: str, stats: str, output: str, correlate_summary: str | None = None,
           cka: str | None = None, probe: str | None = None, metrics=(), figures_dir: str | None = None,
           title: str = "radlens report", top: int = 10, stable_quantile: float = 0.5,
           rank_by: str | None = None, force: bool = False, encoders=(), checkpoint: str | None = None,
           ordered: bool | None = None, manifest: str | None = None, modalities: str | None = None,
           mask: str | None = None, panel_cases: int = 3, stability: str | None = None,
           min_icc: float | None = None, saliency=(), saliency_maps=(), control: str | None = None) -> list[str]:
    """Write the HTML report (and the figures as PNG under figures_dir); returns figure names."""
    html.check_options(top, stable_quantile, rank_by)
    panels = panel_spec(manifest, modalities, mask, panel_cases)
    inputs = {"radiomics": radiomics, "compare": compare, "stats": stats, "correlate_summary": correlate_summary,
              "cka": cka, "probe": probe, "manifest": manifest, "stability": stability, "control": control,
              "metrics": list(metrics), "encoder": list(encoders)}
    piped = check_inputs(inputs, files_only={"manifest": "its relative image paths resolve against its folder",
                                             "encoder": "a checkpoint is read from a file"})
    for path in saliency:
        if path == "-" or not os.path.isfile(path):
            raise RadlensError(f"--saliency file not found: {path} (a saliency table is read with its sidecar)")
    for d in saliency_maps:
        if not os.path.isdir(d):
            raise RadlensError(f"--saliency-maps folder not found: {d}")
    if saliency_maps and panels is None:
        raise UsageError("--saliency-maps draws on the example cases: give --manifest, --modalities and --mask")
    check_output(output, force, suffix=(".html", ".htm"))
    inputs = spool_stdin(inputs, piped)  # the report hashes the spooled bytes and shows the input as stdin
    read_icc(inputs["stability"], min_icc)  # checked (and readable) before any figure is drawn
    versions = provenance.library_versions(("numpy", "scipy", "pandas", "h5py", "matplotlib", "typer"))
    versions["radlens"] = __version__
    text, figures = html.build(*(inputs[r] for r in ("radiomics", "compare", "stats", "correlate_summary", "cka",
                                                     "probe", "metrics")),
                               title=title, top=top, stable_quantile=stable_quantile, rank_by=rank_by,
                               command=provenance.command_line(), versions=versions,
                               created=provenance.created_timestamp(),
                               encoders=[read_finetune_record(p) for p in encoders],
                               checkpoint=checkpoint, ordered=ordered, panels=panels,
                               stability=inputs["stability"], min_icc=min_icc,
                               saliency=(list(saliency), list(saliency_maps)) if saliency or saliency_maps else None,
                               control=inputs["control"])
    if figures_dir:
        write_figures(figures, figures_dir, force)
    prov = provenance.build("report", inputs=inputs,
                            params={"title": title, "top": top, "stable_quantile": stable_quantile,
                                    "rank_by": rank_by, "checkpoint": checkpoint, "ordered": ordered,
                                    "modalities": modalities, "mask": mask, "panel_cases": panel_cases,
                                    "figures": figures_dir, "min_icc": min_icc})
    write_text(html.embed_provenance(text, prov), output, force, suffix=".html")
    return [f.name for f in figures]


@command("report")
def report_cli(
    radiomics: str = typer.Option(..., "--radiomics", metavar="R.h5", help="Radiomics case table (HDF5, from extract-radiomics/merge)."),
    compare: str = typer.Option(..., "--compare", metavar="DELTA.csv", help="Per-feature changes (DELTA.csv from compare; one or several checkpoints)."),
    stats: str = typer.Option(..., "--stats", metavar="TABLE.csv", help="Group table (TABLE.csv from stats): the paper's Table 1."),
    output: str = output_option("HTML report to write (`-` for stdout)."),
    correlate_summary: Optional[str] = typer.Option(None, "--correlate-summary", metavar="CSV",
                                                    help="Rad4XCNN summary CSV (correlate-summary); adds a section."),
    cka: Optional[str] = typer.Option(None, "--cka", metavar="CSV", help="CKA CSV (cka -o); adds a section."),
    probe: Optional[str] = typer.Option(None, "--probe", metavar="CSV", help="Probe CSV (probe -o); adds a section."),
    metrics: Optional[List[str]] = typer.Option(None, "--metrics", metavar="CSV",
                                                help="Fine-tuning metrics CSV (finetune --metrics); repeat for several."),
    encoders: Optional[List[str]] = typer.Option(None, "--encoder", metavar="FT.pt",
                                                 help="Fine-tuned checkpoint (finetune -o): its task, target and epoch "
                                                      "are named in the report; repeat for several."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="NAME",
                                             help="With several compared checkpoints: the one the views, Table 1 and "
                                                  "image panels describe [default: the last]."),
    ordered: Optional[bool] = typer.Option(None, "--ordered/--unordered",
                                           help="The checkpoints are (are not) stages of one run: trajectory plot vs "
                                                "dendrogram [default: ordered when each records an epoch]."),
    manifest: Optional[str] = typer.Option(None, "--manifest", metavar="CSV",
                                           help="Cohort manifest: adds image panels (needs --modalities and --mask)."),
    modalities: Optional[str] = modalities_option("Image columns to show in the panels, e.g. t2,dwi,adc.", default=None, metavar="LIST"),
    mask: Optional[str] = mask_option("ROI outlined in the panels (as for extract-radiomics).", default=None, metavar="COLUMN[:LABELS]"),
    panel_cases: int = typer.Option(3, "--panel-cases", metavar="N", help="Example cases shown with every modality."),
    stability: Optional[str] = stability_option(),
    min_icc: Optional[float] = min_icc_option(),
    control: Optional[str] = typer.Option(None, "--control", metavar="TABLE.csv",
                                          help="stats' TABLE.csv of the same pipeline on negative-control images "
                                               "(perturb --negative-control shuffled-roi): each modality x family's "
                                               "pre-trained R² beside this run's."),
    saliency: Optional[List[str]] = typer.Option(None, "--saliency", metavar="CSV",
                                                 help="Saliency table (saliency -o): its agreement table; repeat "
                                                      "for several."),
    saliency_maps: Optional[List[str]] = typer.Option(None, "--saliency-maps", metavar="DIR",
                                                      help="Maps folder (saliency --maps): the example cases' maps "
                                                           "overlaid (needs --manifest); repeat for several."),
    figures: Optional[str] = typer.Option(None, "--figures", metavar="DIR", help="Also write every figure as PNG into this folder."),
    title: str = typer.Option("radlens report", "--title", metavar="TEXT", help="Title of the report."),
    top: int = typer.Option(10, "--top", metavar="K", help="Features per view (gains, losses, stable)."),
    stable_quantile: float = typer.Option(0.5, "--stable-quantile", metavar="Q",
                                          help="Stable features: importance (or R² when ranking by Δr²) above this "
                                               "quantile before and after."),
    rank_by: Optional[str] = typer.Option(None, "--rank-by", metavar="STAT",
                                          help="Rank the views by delta_r2 or delta_importance [default: compare's "
                                               "own ranks]."),
    force: bool = force_option(),
):
    """Write a self-contained HTML report of a run.

    Reads the radiomics table (cohort summary, provenance), compare's DELTA.csv and stats'
    TABLE.csv, plus optional correlate-summary, CKA, probe and fine-tuning metrics CSVs.
    Writes one HTML file with every figure embedded (opens offline; no external assets):
    Table 1 (MSE/R² by family, image type and modality, pre vs fine-tuned; stars from the
    BH q), R² by modality x family (the paper's Fig. 2), the largest gains, losses and
    stable features among the decodable ones, with Δr², ΔI and their intervals (Fig. 3),
    how many features changed beyond the null, size-related features, optional sections,
    and provenance (inputs with sha256, versions, history). Every number is labelled with
    the statistic its column holds. Missing optional inputs leave their sections out.
    The headline gives the median pre-trained R² over all columns, says "underpowered: …"
    when decode judged the cohort too small (docs/validity.md), and names the fine-tuning
    task of the checkpoint from the --encoder whose sha256 decode recorded. One table
    input may be `-` (stdin; hashed as piped); --manifest and --encoder are files. The
    report embeds its own provenance, which `radlens info report.html` shows.

    With several checkpoints in DELTA.csv: a heatmap of Δr² by family x checkpoint, a
    trajectory when they are epochs of one run (--ordered), else a dendrogram of their
    change profiles. With --manifest/--modalities/--mask: image panels (example cases, and
    low/high test cases of the top gained and lost features, ROI outlined, axial,
    anterior up, patient's right on the left, mm scale bar). --figures DIR writes the PNGs.
    With --stability ICC.csv (radlens stability): each listed feature's ICC, and the
    change statistic against ICC with Spearman's rho and p; --min-icc leaves features
    with a lower ICC out of the views. With --control TABLE.csv (stats of the same
    pipeline on `perturb --negative-control shuffled-roi` images): each modality x
    family's pre-trained R² beside this run's, and which texture families keep more than
    half of it (read through the ROI's histogram and size, not its texture).
    With --saliency/--saliency-maps (from `radlens saliency`): the methods' agreement
    table and their maps (and concept maps) overlaid on the example cases.

    Examples:

    \b
      radlens report --radiomics radiomics.h5 --compare delta.csv --stats table.csv -o report.html
      radlens report --radiomics radiomics.h5 --compare delta.csv --stats table.csv \\
          --cka cka.csv --metrics ft_metrics.csv --encoder ft.pt --figures figs -o report.html
      radlens report --radiomics radiomics.h5 --compare delta.csv --stats table.csv \\
          --manifest cohort.csv --modalities t2,dwi,adc --mask gland --figures figs -o report.html
    """
    names = report(radiomics, compare, stats, output, correlate_summary, cka, probe, metrics or [], figures,
                   title, top, stable_quantile, rank_by, force, encoders=encoders or [], checkpoint=checkpoint,
                   ordered=ordered, manifest=manifest, modalities=modalities, mask=mask, panel_cases=panel_cases,
                   stability=stability, min_icc=min_icc,
                   saliency=saliency or [], saliency_maps=saliency_maps or [], control=control)
    if output != "-":
        log.info(f"wrote {output} ({len(names)} figures)")
