"""`radlens report`: one self-contained HTML file with the paper's tables and figures."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from radlens_cli import log
from radlens_cli.commands._util import command, force_option, output_option
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.files import atomic_output, check_output


def report(radiomics: str, compare: str, stats: str, output: str, correlate_summary: str | None = None,
           cka: str | None = None, probe: str | None = None, metrics=(), figures_dir: str | None = None,
           title: str = "radlens report", top: int = 10, stable_quantile: float = 0.5,
           rank_by: str = "delta_importance", force: bool = False) -> list[str]:
    """Write the HTML report (and the figures as PNG under figures_dir); returns figure names."""
    from radlens_cli import provenance
    from radlens_cli.report import html

    if top < 1:
        raise UsageError("--top must be at least 1")
    if not 0.0 <= stable_quantile <= 1.0:
        raise UsageError("--stable-quantile must be between 0 and 1")
    if rank_by not in ("delta_importance", "delta_r2"):
        raise UsageError(f"--rank-by {rank_by}: use delta_importance or delta_r2")
    for flag, path in (("--radiomics", radiomics), ("--compare", compare), ("--stats", stats),
                       ("--correlate-summary", correlate_summary), ("--cka", cka), ("--probe", probe),
                       *(("--metrics", p) for p in metrics)):
        if path is not None and path == "-":
            raise UsageError(f"{flag}: give a file (the report hashes its inputs)")
        if path is not None and not os.path.isfile(path):
            raise RadlensError(f"{flag} file not found: {path}")
    check_output(output, force)
    versions = provenance.library_versions(("numpy", "scipy", "pandas", "h5py", "matplotlib", "typer"))
    from radlens_cli import __version__

    versions["radlens"] = __version__
    text, figures = html.build(radiomics, compare, stats, correlate_summary, cka, probe, list(metrics),
                               title=title, top=top, stable_quantile=stable_quantile, rank_by=rank_by,
                               command=provenance.command_line(), versions=versions,
                               created=provenance.created_timestamp())
    if figures_dir:
        if os.path.exists(figures_dir) and not os.path.isdir(figures_dir):
            raise RadlensError(f"--figures is a file, not a folder: {figures_dir}")
        os.makedirs(figures_dir, exist_ok=True)
        for fig in figures:
            with atomic_output(os.path.join(figures_dir, fig.name + ".png"), force, suffix=".png") as tmp:
                with open(tmp, "wb") as fh:
                    fh.write(fig.png)
    with atomic_output(output, force, suffix=".html") as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
    return [f.name for f in figures]


@command("report")
def report_cli(
    radiomics: str = typer.Option(..., "--radiomics", metavar="R.h5", help="Radiomics case table (HDF5, from extract-radiomics/merge)."),
    compare: str = typer.Option(..., "--compare", metavar="DELTA.csv", help="Per-feature importance changes (DELTA.csv from compare)."),
    stats: str = typer.Option(..., "--stats", metavar="TABLE.csv", help="Group table (TABLE.csv from stats): the paper's Table 1."),
    output: str = output_option("HTML report to write (`-` for stdout)."),
    correlate_summary: Optional[str] = typer.Option(None, "--correlate-summary", metavar="CSV",
                                                    help="Rad4XCNN summary CSV (correlate-summary); adds a section."),
    cka: Optional[str] = typer.Option(None, "--cka", metavar="CSV", help="CKA CSV (cka -o); adds a section."),
    probe: Optional[str] = typer.Option(None, "--probe", metavar="CSV", help="Probe CSV (probe -o); adds a section."),
    metrics: Optional[List[str]] = typer.Option(None, "--metrics", metavar="CSV",
                                                help="Fine-tuning metrics CSV (finetune --metrics); repeat for several."),
    figures: Optional[str] = typer.Option(None, "--figures", metavar="DIR", help="Also write every figure as PNG into this folder."),
    title: str = typer.Option("radlens report", "--title", metavar="TEXT", help="Title of the report."),
    top: int = typer.Option(10, "--top", metavar="K", help="Features per view (gains, losses, stable)."),
    stable_quantile: float = typer.Option(0.5, "--stable-quantile", metavar="Q",
                                          help="Stable features: importance above this quantile before and after."),
    rank_by: str = typer.Option("delta_importance", "--rank-by", metavar="STAT",
                                help="Rank the views by delta_importance (the paper) or delta_r2 (decodability)."),
    force: bool = force_option(),
):
    """Write a self-contained HTML report of a run.

    Reads the radiomics table (cohort summary, provenance), compare's DELTA.csv and stats'
    TABLE.csv, plus optional correlate-summary, CKA, probe and fine-tuning metrics CSVs.
    Writes one HTML file with every figure embedded (opens offline; no external assets):
    Table 1 (MSE/R² by family, image type and modality, pre vs fine-tuned, with stars),
    R² by modality x family (the paper's Fig. 2), the largest gains, losses and stable
    features with ΔI, confidence intervals and Δr² (Fig. 3), size-related features,
    optional sections, and provenance (inputs with sha256, versions, history). Missing
    optional inputs leave their sections out. --figures DIR also writes the PNGs.

    Examples:

    \b
      radlens report --radiomics radiomics.h5 --compare delta.csv --stats table.csv -o report.html
      radlens report --radiomics radiomics.h5 --compare delta.csv --stats table.csv \\
          --cka cka.csv --metrics ft_metrics.csv --figures figs -o report.html
    """
    names = report(radiomics, compare, stats, output, correlate_summary, cka, probe, metrics or [], figures,
                   title, top, stable_quantile, rank_by, force)
    if output != "-":
        log.info(f"wrote {output} ({len(names)} figures)")
