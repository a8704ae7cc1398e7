"""`radlens stats`: the paper's Table 1 (MSE, R^2, Wilcoxon) per radiomic group.

Library: lens.group_stats (lens/stats.py: Table 1 groups, Wilcoxon, BH; the pairing of
lens/compare.py), io/formats/decoder.py.
"""

from __future__ import annotations

from typing import List

import typer

from radlens_cli import log
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (allow_different_preprocessing_option, allow_missing_option,
                                          declare_comparison, decoder_inputs, force_option, labels_option,
                                          load_decoders, load_panel, min_icc_option, output_option, read_icc, stability_option)
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output, write_text
from radlens_cli.io.formats import write_csv
from radlens_cli.lens.compare import checkpoint_labels
from radlens_cli.lens.stability import group_median_icc, stable_columns
from radlens_cli.lens.stats import group_stats, markdown_table


def stats(pre_path: str, ft_path, output: str, by: str = "family,image_type,modality,modality_family",
          fmt: str = "csv", allow_missing: bool = False, force: bool = False, labels=None,
          allow_different_preprocessing: bool = False, stability: str | None = None,
          min_icc: float | None = None, null_panel: str | None = None,
          null_delta: float | None = None, centre: str = "median"):
    """Write the group table of the reference decoder against each of `ft_path` (a path or
    a list); returns the DataFrame."""
    others = decoder_inputs(pre_path, ft_path)
    if fmt not in ("csv", "markdown"):
        raise UsageError(f"--format must be csv or markdown, not {fmt!r}")
    names = checkpoint_labels(others, labels)
    icc = read_icc(stability, min_icc)
    check_output(output, force, suffix=(".md", ".txt") if fmt == "markdown" else ".csv")
    ref, decs, names = load_decoders(pre_path, others, names, labels)
    declare_comparison("stats", pre_path, ref, others, names, decs, inputs={"stability": stability},
                       params={"by": by, "format": fmt, "allow_missing": allow_missing,
                               "allow_different_preprocessing": allow_different_preprocessing,
                               "stability": stability, "min_icc": min_icc, "centre": centre})
    keep = None
    if min_icc is not None:
        keep = [c for c, ok in zip(ref.columns, stable_columns(icc, ref.columns, min_icc)) if ok]
        log.info(f"stats: --min-icc {min_icc:g}: Table 1 on {len(keep)} of {len(ref.columns)} features")
        if not keep:
            raise UsageError(f"--min-icc {min_icc:g}: no feature of {pre_path} has an ICC that high in {stability}")
    out = group_stats(ref, decs, labels=names,
                      by=by, allow_missing=allow_missing,
                      allow_different_preprocessing=allow_different_preprocessing,
                      warn=log.warn, info=log.info, columns=keep,
                      null_panel=load_panel(null_panel),
                      null_delta=null_delta, centre=centre)
    if icc is not None:
        out = group_median_icc(out, ref.columns, ref.column_meta, icc, keep)
    if fmt == "markdown":
        write_text(markdown_table(out), output, force, suffix=".md")
    else:
        write_csv(out, output, force)
    return out


@command("stats")
def stats_cli(
    pre: str = typer.Argument(..., metavar="DEC_REF", help="Reference decoder, usually of the pre-fine-tuning embeddings (`-` for stdin)."),
    ft: List[str] = typer.Argument(..., metavar="DEC [DEC ...]", help="Decoders to compare with the reference, same share model (one `-` for stdin)."),
    output: str = output_option("Output table (`-` for stdout)."),
    labels: str = labels_option(),
    by: str = typer.Option("family,image_type,modality,modality_family", "--by", help="Comma-separated groupings: family, image_type (original vs wavelet), modality, modality_family."),
    fmt: str = typer.Option("csv", "--format", help="csv, or markdown for the paper's Table 1 layout."),
    allow_missing: bool = allow_missing_option("Use the eval cases common to both decoders instead of failing on a mismatch."),
    allow_different_preprocessing: bool = allow_different_preprocessing_option(),
    stability: str = stability_option(),
    min_icc: float = min_icc_option(),
    null_panel: str = typer.Option(None, "--null-panel", help="Decoder of a second fine-tuning run of the first compared checkpoint's task (another seed; same SHARE): the groups' null_delta is the 0.95 quantile of |group-mean delta_r2_clipped| between the two runs (symmetric lens)."),
    null_delta: float = typer.Option(None, "--null-delta", help="Half-width of the groups' interval null (symmetric lens; default 0.05, or from --null-panel)."),
    centre: str = typer.Option("median", "--centre", help="Symmetric lens: test each group-mean change relative to the checkpoint's common shift, the median change over decodable features in each re-split (median), or as it is (none: 0.4.0's test)."),
    force: bool = force_option(),
):
    """Table 1: MSE, R^2 and a test of change per group.

    One row per group and compared checkpoint (the first decoder is the reference);
    group MSE over its features and cases and group R^2 = mean of per-feature R^2, for
    the reference (_pre) and the checkpoint (_ft). Wavelet sub-bands are pooled into
    `wavelet`.
    Decoders of a --method symmetric share (the default): every number is the mean over
    the share's re-splits; r2_clipped_* and delta_r2_clipped use R^2 clipped below at 0;
    the group-mean change relative to the checkpoint's common shift (the median change
    over its decodable features in each re-split, as compare takes it out of each
    feature), delta_r2_relative = delta_r2_clipped - common_shift, is tested against the
    interval null |delta| <= null_delta (Nadeau-Bengio corrected resampled t over the
    re-splits, test nb_corrected_t_interval_relative; *_se the standard errors),
    null_delta from --null-panel, --null-delta or the default 0.05 (null_delta_source).
    With --centre none the group-mean delta_r2_clipped itself is tested (0.4.0's test,
    nb_corrected_t_interval; common_shift 0).
    Decoders of calibrated-0.2 and paper shares: on the evaluation split, a two-sided
    Wilcoxon signed-rank test on each case's squared error averaged over the group's
    features (wilcoxon_p), given the fitted decoders.
    q_bh is the BH-FDR q-value across that checkpoint's table, stars from q_bh
    (* q<0.05 ** q<0.01 *** q<0.001). Refuses decoders that differ in share model,
    split, method or embedding preprocessing, as compare does.

    \b
    Columns (symmetric): checkpoint,group_by,group,n_features,mse_pre,r2_pre,mse_ft,r2_ft,
    r2_clipped_pre,r2_clipped_ft,delta_r2_clipped,delta_r2_clipped_se,common_shift,
    common_shift_se,delta_r2_relative,delta_r2_relative_se,null_delta,
    null_delta_source,p_null,test,n_resplits,stars,q_bh
    (calibrated-0.2, paper): checkpoint,group_by,group,n_features,mse_pre,r2_pre,mse_ft,
    r2_ft,wilcoxon_p,stars,q_bh (both: [,median_icc])

    --stability ICC.csv (radlens stability) adds median_icc, the median ICC of each
    group's features; --min-icc builds the groups (and the BH family) from the features
    with an ICC at least that high only.

    Examples:

    \b
      radlens stats dec_pre.h5 dec_ft.h5 -o table.csv
      radlens stats dec_pre.h5 dec_ft.h5 -o - --format markdown --by family,image_type
      radlens stats dec_pre.h5 dec_ft.h5 -o table_named.csv --labels finetuned

    Several checkpoints: radlens stats dec_pre.h5 dec_e10.h5 dec_e20.h5 -o traj_table.csv
    --labels e10,e20
    """
    stats(pre, ft, output, by=by, fmt=fmt, allow_missing=allow_missing, force=force,
          labels=labels, allow_different_preprocessing=allow_different_preprocessing, stability=stability,
          min_icc=min_icc, null_panel=null_panel, null_delta=null_delta, centre=centre)
