"""`radlens compare`: decodability change (delta r^2) and importance change per radiomic feature.

Library: lens.compare_decoders (lens/compare.py: pairing, delta table, paired test, bootstrap,
permutations, three views; lens/checks.py), io/formats/decoder.py.
"""

from __future__ import annotations

import os
import sys
from typing import List

import typer

from radlens_cli import log
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (allow_different_preprocessing_option, allow_missing_option,
                                          declare_comparison, decoder_inputs, force_option, labels_option,
                                          load_decoders, load_panel, min_icc_option, output_option, read_icc, seed_option,
                                          stability_option)
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output, write_text
from radlens_cli.io.formats import write_csv
from radlens_cli.lens.compare import checkpoint_labels, compare_decoders
from radlens_cli.lens.stability import stable_comparison


def compare(pre_path: str, ft_path, output: str, top: int = 5, stable_quantile: float = 0.5,
            bootstrap: int = 0, permutations: int = 0, rank_by: str | None = None,
            summary: str | None = None, ci_level: float = 0.95, seed: int = 0,
            allow_missing: bool = False, force: bool = False, labels=None,
            allow_different_preprocessing: bool = False, stability: str | None = None,
            min_icc: float | None = None, null_panel: str | None = None,
            null_delta: float | None = None, centre: str = "median"):
    """Write DELTA.csv: the reference decoder `pre_path` against each of `ft_path` (a path
    or a list of paths), one block of rows per compared checkpoint; returns the DataFrame."""
    others = decoder_inputs(pre_path, ft_path)
    if summary == "-" and output == "-":
        raise UsageError("--summary and --output cannot both be `-` (stdout)")
    names = checkpoint_labels(others, labels)
    icc = read_icc(stability, min_icc)
    check_output(output, force, suffix=".csv")
    if summary:
        check_output(summary, force, suffix=(".txt", ".md"))
    ref, decs, names = load_decoders(pre_path, others, names, labels)
    result = compare_decoders(ref, decs, labels=names,
                              rank_by=rank_by, bootstrap=bootstrap, permutations=permutations,
                              ci_level=ci_level, seed=seed, allow_missing=allow_missing,
                              allow_different_preprocessing=allow_different_preprocessing,
                              top=top, stable_quantile=stable_quantile, warn=log.warn,
                              info=log.info, progress=log.progress,
                              null_panel=load_panel(null_panel),
                              null_delta=null_delta, centre=centre)
    declare_comparison("compare", pre_path, ref, others, names, decs,
                       inputs={"stability": stability, "null_panel": null_panel},
                       params={"rank_by": result.rank_by, "bootstrap": bootstrap, "permutations": permutations,
                               "ci_level": ci_level, "seed": seed, "top": top, "stable_quantile": stable_quantile,
                               "allow_missing": allow_missing,
                               "allow_different_preprocessing": allow_different_preprocessing,
                               "stability": stability, "min_icc": min_icc, "null_panel": null_panel,
                               "null_delta": null_delta, "centre": centre})
    if icc is not None:
        result = stable_comparison(result, icc, min_icc, top, stable_quantile, stability, warn=log.warn,
                                   info=log.info)[0]
    write_csv(result.table, output, force)
    text = result.views_text(ref_name=os.path.basename(str(pre_path)))
    if text:
        if summary:
            write_text(text, summary, force, suffix=".txt")
        elif log.VERBOSITY["level"] >= 1:  # the views are information: --quiet hides them
            sys.stderr.write(text)
    return result.table


@command("compare")
def compare_cli(
    pre: str = typer.Argument(..., metavar="DEC_REF", help="Reference decoder, usually of the pre-fine-tuning embeddings (`-` for stdin)."),
    ft: List[str] = typer.Argument(..., metavar="DEC [DEC ...]", help="Decoders to compare with the reference, same share model (one `-` for stdin)."),
    output: str = output_option("Output DELTA.csv (`-` for stdout)."),
    labels: str = labels_option(),
    top: int = typer.Option(5, "--top", min=0, help="Print the three views (gains, losses, least changed) with K features each; 0 to skip."),
    stable_quantile: float = typer.Option(0.5, "--stable-quantile", help="'Important in both' means above this quantile in both stages (least-changed view): of importance, or of R^2 with --rank-by delta_r2."),
    rank_by: str = typer.Option(None, "--rank-by", help="Statistic for ranks, views, CIs and p_perm: delta_r2_clipped (default for symmetric decoders), delta_r2 (default for calibrated-0.2 decoders) or delta_importance (the paper; default for --method paper decoders)."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap resamples over cases for <rank-by>_ci_low/_ci_high (0: none)."),
    permutations: int = typer.Option(0, "--permutations", min=0, help="Permutations (swap reference/compared embeddings per case) for p_perm and q_perm (0: none)."),
    ci_level: float = typer.Option(0.95, "--ci-level", help="Confidence level of the bootstrap percentile interval."),
    summary: str = typer.Option(None, "--summary", help="Write the three views to this file instead of stderr."),
    allow_missing: bool = allow_missing_option("Use the cases common to both decoders instead of failing on a mismatch."),
    allow_different_preprocessing: bool = allow_different_preprocessing_option(),
    stability: str = stability_option(),
    min_icc: float = min_icc_option(),
    null_panel: str = typer.Option(None, "--null-panel", help="Decoder of a second fine-tuning run of the first compared checkpoint's task (another seed; same SHARE): null_delta is the 0.95 quantile of |delta_r2_relative| between the two runs (symmetric lens)."),
    null_delta: float = typer.Option(None, "--null-delta", help="Half-width of the interval null |delta_r2_relative| <= null_delta (symmetric lens; default 0.05, or from --null-panel)."),
    centre: str = typer.Option("median", "--centre", help="Symmetric lens: test each feature relative to the checkpoint's common shift, the median change over decodable features in each re-split (median), or as it is (none: 0.3.0's test)."),
    seed: int = seed_option(),
    force: bool = force_option(),
):
    """Decodability and importance change vs a reference.

    The first decoder is the reference (usually the pre-trained embeddings); every other
    decoder is compared with it and gets one row per radiomic column, named in the
    `checkpoint` column (file name, or --labels).
    Decoders of a --method symmetric share (the default): over the share's R re-splits,
    r2_pre/r2_ft are the mean held-out R^2 and delta_r2 their difference;
    r2_clipped_pre/_ft and delta_r2_clipped the same with R^2 clipped below at 0 (a
    feature no decoder reads counts 0, so no column dominates a mean), ranked;
    delta_r2_clipped_se its Nadeau-Bengio corrected resampled standard error.
    common_shift (_se): the checkpoint's change shared by its features (the median of the
    change over features with clipped R^2 > 0.05, per re-split, averaged);
    delta_r2_relative (_se) = delta_r2_clipped - common_shift, the tested statistic:
    p_null is the p-value of the interval null |delta_r2_relative| <= null_delta (test
    nb_corrected_t_interval_relative; with --centre none common_shift is 0 and the test
    nb_corrected_t_interval), q_bh its BH q-value within the checkpoint. A feature at
    q_bh < 0.05 changed in decodability, beyond the change all features share, by more
    than re-encoding the same information changes it (docs/validity.md); a change all
    features share is common_shift, and stats tests it per group. null_delta comes from --null-panel (a
    second fine-tuning run of the same task, another seed; also gives
    null_panel_spearman, the rank agreement of delta_r2_clipped between the two runs),
    --null-delta, or the default 0.05; null_delta_source says which.
    Decoders of calibrated-0.2 and paper shares: held-out R^2 on the evaluation split
    r2_pre, r2_ft, delta_r2; the paper's importance I = ||theta_k,:||_2 (intercept
    excluded), delta_importance; p_null of the paired t-test of squared errors given the
    fitted decoders (test paired_t_sqerr) and q_bh; r2_direct_pre/_ft, delta_r2_direct a
    share-free control; --bootstrap adds percentile CIs (<stat>_ci_low/_ci_high),
    --permutations p_perm/q_perm (warns when too few can reach q_perm < 0.05); with a
    share fitted with --seeds K, delta_r2_mean/_sd/_seed_spearman across share
    initialisations.
    Every method: `decodable` (R^2 > 0 in at least one of the two), rank_gain/rank_loss
    (1 = largest increase/decrease) by --rank-by among decodable features. Decoders must
    share the share model, split, method and embedding preprocessing.

    \b
    DELTA.csv columns (symmetric): checkpoint,column,modality,image_type,family,feature,
    r2_pre,r2_ft,delta_r2,r2_clipped_pre,r2_clipped_ft,delta_r2_clipped,
    delta_r2_clipped_se,common_shift,common_shift_se,delta_r2_relative,
    delta_r2_relative_se,importance_pre,importance_ft,delta_importance,decodable,
    null_delta,null_delta_source,p_null,q_bh,test,n_resplits,rank_gain,rank_loss
    [,null_panel_spearman].
    (calibrated-0.2, paper): checkpoint,column,modality,image_type,family,feature,r2_pre,
    r2_ft,delta_r2,importance_pre,importance_ft,delta_importance,decodable,p_null,q_bh,
    test,rank_gain,rank_loss[,r2_direct_pre,r2_direct_ft,delta_r2_direct]
    [,delta_r2_mean,delta_r2_sd,delta_r2_seed_spearman][,<stat>_ci_low,<stat>_ci_high]
    [,p_perm,q_perm][,icc].

    --stability ICC.csv (radlens stability) adds each feature's ICC over perturbed
    replicates (`icc`); --min-icc leaves features with a lower (or no) ICC out of the
    table, the BH families (q_bh, q_perm), the ranks and the views.

    Examples:

    \b
      radlens compare dec_pre.h5 dec_ft.h5 -o delta.csv
      radlens compare dec_pre.h5 dec_ft.h5 -o delta.csv --null-delta 0.08 --force
      radlens compare dec_pre.h5 dec_ft.h5 -o delta_named.csv --labels finetuned

    Several checkpoints (e.g. epochs of one run): radlens compare dec_pre.h5
    dec_e10.h5 dec_e20.h5 dec_e30.h5 -o traj.csv --labels e10,e20,e30
    """
    compare(pre, ft, output, top=top, stable_quantile=stable_quantile, bootstrap=bootstrap,
            permutations=permutations, rank_by=rank_by, summary=summary, ci_level=ci_level,
            seed=seed, allow_missing=allow_missing, force=force, labels=labels,
            allow_different_preprocessing=allow_different_preprocessing, stability=stability, min_icc=min_icc,
            null_panel=null_panel, null_delta=null_delta, centre=centre)
