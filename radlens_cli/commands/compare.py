"""`radlens compare`: decodability change (delta r^2) and importance change per radiomic feature.

Library: lens/compare.py (delta table, paired test, bootstrap, permutations, three views), lens/checks.py.
"""

from __future__ import annotations

import os
from typing import List

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import checkpoint_labels, command, recorded_label, force_option, output_option, seed_option
from radlens_cli.errors import RadlensError, UsageError


def compare(pre_path: str, ft_path, output: str, top: int = 5, stable_quantile: float = 0.5,
            bootstrap: int = 0, permutations: int = 0, rank_by: str | None = None,
            summary: str | None = None, ci_level: float = 0.95, seed: int = 0,
            allow_missing: bool = False, force: bool = False, labels=None,
            allow_different_preprocessing: bool = False):
    """Write DELTA.csv: the reference decoder `pre_path` against each of `ft_path` (a path
    or a list of paths), one block of rows per compared checkpoint; returns the DataFrame."""
    import pandas as pd

    from radlens_cli.io.files import atomic_output, check_output
    from radlens_cli.lens import compare as cmp
    from radlens_cli.io.formats.decoder import load_decoder

    others = [ft_path] if isinstance(ft_path, str) else list(ft_path)
    if not others:
        raise UsageError("give the reference decoder and at least one decoder to compare with it")
    if [pre_path, *others].count("-") > 1:
        raise UsageError("only one input can be `-` (stdin)")
    if rank_by is not None and rank_by not in cmp.RANK_BY:
        raise UsageError(f"--rank-by must be one of {', '.join(cmp.RANK_BY)}, not {rank_by!r}")
    if not 0.0 <= stable_quantile < 1.0:
        raise UsageError("--stable-quantile must be in [0, 1)")
    if not 0.0 < ci_level < 1.0:
        raise UsageError("--ci-level must be in (0, 1)")
    if summary == "-" and output == "-":
        raise UsageError("--summary and --output cannot both be `-` (stdout)")
    names = checkpoint_labels(others, labels)
    check_output(output, force, suffix=".csv")
    if summary:
        check_output(summary, force, suffix=(".txt", ".md"))
    pre = load_decoder(pre_path)
    if rank_by is None:   # the method's statistic: delta_r2 (calibrated) or delta_importance (paper)
        rank_by = "delta_importance" if pre.attrs.get("method", "paper") == "paper" else "delta_r2"
    if permutations:
        msg = cmp.permutation_resolution(permutations, len(pre.columns))
        if msg:
            log.warn(msg)
    blocks, texts, identity, loaded = [], [], {}, {}
    if "-" in others and not labels:   # a piped decoder is named by its recorded source
        loaded = {"-": load_decoder("-")}
        names = [recorded_label(loaded["-"].attrs) if p == "-" else n for p, n in zip(others, names)]
        checkpoint_labels(others, names)
    for path, name in zip(others, names):
        identity[name] = provenance.checkpoint_identity(path, (loaded.get(path) or load_decoder(path)).attrs)
    provenance.declare("compare", inputs={"reference": pre_path, "compared": others},
                       params={"labels": names, "rank_by": rank_by, "bootstrap": bootstrap,
                               "permutations": permutations, "ci_level": ci_level, "seed": seed,
                               "top": top, "stable_quantile": stable_quantile,
                               "allow_missing": allow_missing,
                               "allow_different_preprocessing": allow_different_preprocessing,
                               "reference": provenance.checkpoint_identity(pre_path, pre.attrs),
                               "checkpoints": identity},
                       history=provenance.merged_history(pre.attrs, *(
                           (loaded.get(p) or load_decoder(p)).attrs for p in others)))
    for path, name in zip(others, names):
        df = compare_one(pre_path, path, pre, name, rank_by=rank_by, bootstrap=bootstrap,
                         permutations=permutations, ci_level=ci_level, seed=seed,
                         allow_missing=allow_missing,
                         allow_different_preprocessing=allow_different_preprocessing)
        blocks.append(df)
        if top > 0:
            head = f"== {name} vs {os.path.basename(str(pre_path))}\n" if len(others) > 1 else ""
            texts.append(head + cmp.format_views(cmp.three_views(df, top, stable_quantile, rank_by),
                                                 rank_by))
    out = pd.concat(blocks, ignore_index=True)
    with atomic_output(output, force, suffix=".csv") as tmp:
        out.to_csv(tmp, index=False, float_format="%.10g")
    if texts:
        text = "\n".join(texts)
        if summary:
            with atomic_output(summary, force, suffix=".txt") as tmp:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(text)
        elif log.VERBOSITY["level"] >= 1:  # the views are information: --quiet hides them
            import sys

            sys.stderr.write(text)
    return out


def compare_one(pre_path, ft_path, pre, name, rank_by, bootstrap, permutations, ci_level, seed,
                allow_missing, allow_different_preprocessing):
    """The DELTA rows of one checkpoint against the reference."""
    import numpy as np

    from radlens_cli.lens import compare as cmp
    from radlens_cli.lens.checks import require_compatible
    from radlens_cli.lens.compare import paired_cases
    from radlens_cli.io.formats.decoder import load_decoder

    ft = load_decoder(ft_path)
    require_compatible(pre, ft, warn=log.warn, allow_preprocessing=allow_different_preprocessing)
    itr_p, itr_f = paired_cases(pre, ft, "train", allow_missing)
    iev_p, iev_f = paired_cases(pre, ft, "eval", allow_missing)
    full_eval = len(iev_p) == len(pre.eval_case_id) == len(ft.eval_case_id)
    full_train = len(itr_p) == len(pre.train_case_id) == len(ft.train_case_id)
    if not full_train:
        log.warn("--allow-missing: importances are those of each decoder's own train cases; "
                 f"refits use the {len(itr_p)} train cases common to both")
    ev = ("eval/squared_error",) + (() if full_eval else ("eval/prediction", "eval/target"))
    bp = load_decoder(pre_path, bulk=ev).bulk
    bf = load_decoder(ft_path, bulk=ev).bulk
    if not full_eval:
        log.warn(f"--allow-missing: R^2 recomputed on the {len(iev_p)} eval cases common to both")
    r2_pre, r2_ft = cmp.shared_eval_r2(pre, ft, iev_p, iev_f, bp, bf)
    p_null = cmp.paired_test(bp["eval/squared_error"][iev_p], bf["eval/squared_error"][iev_f])
    df = cmp.delta_table(pre.columns, pre.column_meta, pre.theta, ft.theta, r2_pre, r2_ft,
                         rank_by=rank_by, checkpoint=name, p_null=p_null)
    if pre.r2_direct is not None and ft.r2_direct is not None and full_eval:
        df["r2_direct_pre"], df["r2_direct_ft"] = pre.r2_direct, ft.r2_direct
        df["delta_r2_direct"] = ft.r2_direct - pre.r2_direct
    add_seed_columns(df, pre, ft, full_eval, name)
    n_dec = int(df["decodable"].sum())
    if n_dec < 0.5 * len(df):
        log.warn(f"{name}: {len(df) - n_dec} of {len(df)} features are not decodable in either "
                 f"stage (R^2 <= {cmp.DECODABLE_R2:g} in both); they are left out of the gain/loss "
                 f"ranks, and the cohort may be too small for the lens")
    if bootstrap or permutations:
        names = ("train/Z", "train/target", "eval/Z", "eval/target")
        bp = load_decoder(pre_path, bulk=names).bulk
        bf = load_decoder(ft_path, bulk=names).bulk
        R_tr, R_ev = bp["train/target"][itr_p], bp["eval/target"][iev_p]
        if (np.abs(R_tr - bf["train/target"][itr_f]).max() > 1e-5
                or np.abs(R_ev - bf["eval/target"][iev_f]).max() > 1e-5):
            raise RadlensError(f"{pre.path} and {ft.path} were decoded against different "
                               f"radiomic values for the same cases; use the same radiomics table")
        data = cmp.PairedData(Zp_tr=bp["train/Z"][itr_p], Zf_tr=bf["train/Z"][itr_f], R_tr=R_tr,
                              Zp_ev=bp["eval/Z"][iev_p], Zf_ev=bf["eval/Z"][iev_f], R_ev=R_ev,
                              intercept=pre.intercept, ridge_pre=pre.ridge, ridge_ft=ft.ridge)
        del bp, bf
        if bootstrap:
            bar = log.progress(total=bootstrap, desc="bootstrap", unit="resample")
            lo, hi = cmp.bootstrap_ci(data, bootstrap, seed=seed, rank_by=rank_by, level=ci_level,
                                      progress=lambda: bar.update(1))
            bar.close()
            df[f"{rank_by}_ci_low"], df[f"{rank_by}_ci_high"] = lo, hi
        if permutations:
            bar = log.progress(total=permutations, desc="permutations", unit="perm")
            p, _ = cmp.permutation_test(data, permutations, seed=seed + 1, rank_by=rank_by,
                                        progress=lambda: bar.update(1))
            bar.close()
            cmp.add_permutations(df, p)
    n_flag = int((df["q_bh"] < 0.05).sum())
    log.info(f"{name}: {n_flag} of {len(df)} features changed beyond the null "
             f"(q_bh < 0.05, {cmp.DEFAULT_TEST}); mean delta_r2 {float(df['delta_r2'].mean()):+.4f}")
    return df


def add_seed_columns(df, pre, ft, full_eval: bool, name: str) -> None:
    """delta_r2 across share seeds (fit-share --seeds): mean, sd, and the mean pairwise
    Spearman correlation of delta_r2 between seeds over decodable features."""
    import numpy as np
    from scipy.stats import spearmanr

    a, b = pre.r2_seeds, ft.r2_seeds
    if a is None or b is None or a.shape != b.shape or not full_eval:
        return
    D = b - a                                               # (K, p)
    df["delta_r2_mean"], df["delta_r2_sd"] = D.mean(axis=0), D.std(axis=0, ddof=1)
    dec = df["decodable"].to_numpy(dtype=bool)
    K = D.shape[0]
    rhos = [spearmanr(D[i, dec], D[j, dec]).statistic for i in range(K) for j in range(i + 1, K)]
    rho = float(np.mean(rhos)) if rhos and dec.sum() > 2 else float("nan")
    df["delta_r2_seed_spearman"] = rho
    log.info(f"{name}: delta_r2 across {K} share seeds: mean sd {float(D.std(axis=0, ddof=1).mean()):.4f}; "
             f"rank stability (mean Spearman between seeds) {rho:.3f}")


@command("compare")
def compare_cli(
    pre: str = typer.Argument(..., metavar="DEC_REF", help="Reference decoder, usually of the pre-fine-tuning embeddings (`-` for stdin)."),
    ft: List[str] = typer.Argument(..., metavar="DEC [DEC ...]", help="Decoders to compare with the reference, same share model (one `-` for stdin)."),
    output: str = output_option("Output DELTA.csv (`-` for stdout)."),
    labels: str = typer.Option(None, "--labels", help="Comma-separated checkpoint names for the compared decoders, in order (default: their file names)."),
    top: int = typer.Option(5, "--top", min=0, help="Print the three views (gains, losses, least changed) with K features each; 0 to skip."),
    stable_quantile: float = typer.Option(0.5, "--stable-quantile", help="'Important in both' means above this quantile in both stages (least-changed view): of importance, or of R^2 with --rank-by delta_r2."),
    rank_by: str = typer.Option(None, "--rank-by", help="Statistic for ranks, views, CIs and p_perm: delta_r2 (default for calibrated decoders) or delta_importance (the paper; default for --method paper decoders)."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap resamples over cases for <rank-by>_ci_low/_ci_high (0: none)."),
    permutations: int = typer.Option(0, "--permutations", min=0, help="Permutations (swap reference/compared embeddings per case) for p_perm and q_perm (0: none)."),
    ci_level: float = typer.Option(0.95, "--ci-level", help="Confidence level of the bootstrap percentile interval."),
    summary: str = typer.Option(None, "--summary", help="Write the three views to this file instead of stderr."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Use the cases common to both decoders instead of failing on a mismatch."),
    allow_different_preprocessing: bool = typer.Option(False, "--allow-different-preprocessing", help="Compare decoders whose embeddings were made with different recorded preprocessing (spacing, crop, layer, pooling...)."),
    seed: int = seed_option(),
    force: bool = force_option(),
):
    """Decodability and importance change vs a reference.

    The first decoder is the reference (usually the pre-trained embeddings); every other
    decoder is compared with it and gets one row per radiomic column, named in the
    `checkpoint` column (file name, or --labels). For every column: held-out R^2 on the
    evaluation split r2_pre (reference), r2_ft, delta_r2; the paper's importance
    I = ||theta_k,:||_2 (intercept excluded), delta_importance; `decodable` (R^2 > 0 in
    at least one of the two); p_null, the default test's p-value (`test` column:
    paired_t_sqerr, a paired t-test over evaluation cases of the squared errors, i.e. of
    delta_r2 given the fitted decoders) and its BH q-value q_bh within that checkpoint;
    rank_gain/rank_loss (1 = largest increase/decrease) by --rank-by among decodable
    features only. With calibrated decoders (see fit-share --method) a rotation,
    permutation, rescaling or shift of the embeddings changes nothing; docs/validity.md
    gives the measured false-positive rates and recovery. r2_direct_pre/_ft and
    delta_r2_direct are a share-free control (ridge straight from the embeddings).
    --bootstrap adds percentile CIs of the rank statistic (<stat>_ci_low/_ci_high),
    --permutations the exchangeability permutation test p_perm and its q_perm (warns when
    too few permutations can reach q_perm < 0.05). With a share fitted with --seeds K,
    delta_r2_mean/_sd are over the K share initialisations and delta_r2_seed_spearman is
    the mean Spearman correlation of delta_r2 between seeds (rank stability). Decoders must share the share model,
    split, intercept, ridge, method and embedding preprocessing.

    \b
    DELTA.csv columns: checkpoint,column,modality,image_type,family,feature,r2_pre,r2_ft,
    delta_r2,importance_pre,importance_ft,delta_importance,decodable,p_null,q_bh,test,
    rank_gain,rank_loss[,r2_direct_pre,r2_direct_ft,delta_r2_direct]
    [,delta_r2_mean,delta_r2_sd,delta_r2_seed_spearman][,<stat>_ci_low,<stat>_ci_high]
    [,p_perm,q_perm].

    Examples:

    \b
      radlens compare dec_pre.h5 dec_ft.h5 -o delta.csv
      radlens compare dec_pre.h5 dec_ft.h5 -o delta.csv --permutations 200 --seed 1
      radlens compare dec_pre.h5 dec_ft.h5 -o delta_named.csv --labels finetuned

    Several checkpoints (e.g. epochs of one run): radlens compare dec_pre.h5
    dec_e10.h5 dec_e20.h5 dec_e30.h5 -o traj.csv --labels e10,e20,e30
    """
    compare(pre, ft, output, top=top, stable_quantile=stable_quantile, bootstrap=bootstrap,
            permutations=permutations, rank_by=rank_by, summary=summary, ci_level=ci_level,
            seed=seed, allow_missing=allow_missing, force=force, labels=labels,
            allow_different_preprocessing=allow_different_preprocessing)
