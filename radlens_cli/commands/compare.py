"""`radlens compare`: importance change (delta I) and decodability change per radiomic feature."""

from __future__ import annotations

import typer

from radlens_cli import log
from radlens_cli.commands._util import command, force_option, output_option, seed_option
from radlens_cli.errors import RadlensError, UsageError


def _ids_table(ids, path):
    import numpy as np

    from radlens_cli.io.tables import CaseTable

    t = CaseTable(case_id=ids, values=np.zeros((len(ids), 0)), columns=[])
    t.path = path
    return t


def paired_cases(pre, ft, which: str, allow_missing: bool):
    """Row indices (i_pre, i_ft) of the cases both decoders used for `which` (train/eval)."""
    from radlens_cli.io.tables import align_cases

    a = _ids_table(getattr(pre, f"{which}_case_id"), f"{pre.path} ({which} cases)")
    b = _ids_table(getattr(ft, f"{which}_case_id"), f"{ft.path} ({which} cases)")
    return align_cases(a, b, allow_missing, names=(pre.path, ft.path))


def compare(pre_path: str, ft_path: str, output: str, top: int = 5, stable_quantile: float = 0.5,
            bootstrap: int = 0, permutations: int = 0, rank_by: str = "delta_importance",
            summary: str | None = None, ci_level: float = 0.95, seed: int = 0,
            allow_missing: bool = False, force: bool = False):
    """Write DELTA.csv for two decoders of one share model; returns the table (DataFrame)."""
    import numpy as np

    from radlens_cli.io.files import atomic_output, check_output
    from radlens_cli.lens import compare as cmp
    from radlens_cli.lens.data import load_decoder
    from radlens_cli.lens.decoder import r2_score

    if pre_path == "-" and ft_path == "-":
        raise UsageError("only one input can be `-` (stdin)")
    if rank_by not in cmp.RANK_BY:
        raise UsageError(f"--rank-by must be one of {', '.join(cmp.RANK_BY)}, not {rank_by!r}")
    if not 0.0 <= stable_quantile < 1.0:
        raise UsageError("--stable-quantile must be in [0, 1)")
    if not 0.0 < ci_level < 1.0:
        raise UsageError("--ci-level must be in (0, 1)")
    if summary == "-" and output == "-":
        raise UsageError("--summary and --output cannot both be `-` (stdout)")
    check_output(output, force)
    if summary:
        check_output(summary, force)
    pre, ft = load_decoder(pre_path), load_decoder(ft_path)
    cmp.require_same_share(pre, ft)
    if pre.intercept != ft.intercept:
        raise RadlensError(f"{pre.path} and {ft.path} differ in --intercept; decode both the same way")
    if pre.attrs.get("eval_split") != ft.attrs.get("eval_split"):
        raise RadlensError(f"{pre.path} and {ft.path} were evaluated on different splits "
                           f"({pre.attrs.get('eval_split')} vs {ft.attrs.get('eval_split')})")
    if pre.ridge != ft.ridge:
        log.warn(f"the decoders use different ridge penalties ({pre.ridge:g} vs {ft.ridge:g}); "
                 f"importance is not comparable on the same footing")
    itr_p, itr_f = paired_cases(pre, ft, "train", allow_missing)
    iev_p, iev_f = paired_cases(pre, ft, "eval", allow_missing)
    full_eval = len(iev_p) == len(pre.eval_case_id) == len(ft.eval_case_id)
    full_train = len(itr_p) == len(pre.train_case_id) == len(ft.train_case_id)
    if not full_train:
        log.warn("--allow-missing: importances are those of each decoder's own train cases; "
                 f"refits use the {len(itr_p)} train cases common to both")
    r2_pre, r2_ft = pre.r2, ft.r2
    if not full_eval:
        log.warn(f"--allow-missing: R^2 recomputed on the {len(iev_p)} eval cases common to both")
        bp = load_decoder(pre_path, bulk=("eval/prediction", "eval/target")).bulk
        bf = load_decoder(ft_path, bulk=("eval/prediction", "eval/target")).bulk
        r2_pre = r2_score(bp["eval/prediction"][iev_p], bp["eval/target"][iev_p])
        r2_ft = r2_score(bf["eval/prediction"][iev_f], bf["eval/target"][iev_f])
    df = cmp.delta_table(pre.columns, pre.column_meta, pre.theta, ft.theta, r2_pre, r2_ft,
                         rank_by=rank_by)
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
            df["ci_low"], df["ci_high"] = lo, hi
        if permutations:
            bar = log.progress(total=permutations, desc="permutations", unit="perm")
            p, _ = cmp.permutation_test(data, permutations, seed=seed + 1, rank_by=rank_by,
                                        progress=lambda: bar.update(1))
            bar.close()
            cmp.add_permutations(df, p)
    with atomic_output(output, force, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.10g")
    if top > 0:
        text = cmp.format_views(cmp.three_views(df, top, stable_quantile, rank_by), rank_by)
        if summary:
            with atomic_output(summary, force, suffix=".txt") as tmp:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(text)
        elif log.VERBOSITY["level"] >= 1:  # the views are information: --quiet hides them
            import sys

            sys.stderr.write(text)
    return df


@command("compare")
def compare_cli(
    pre: str = typer.Argument(..., metavar="DEC_PRE", help="Decoder of the pre-fine-tuning embeddings (`-` for stdin)."),
    ft: str = typer.Argument(..., metavar="DEC_FT", help="Decoder of the fine-tuned embeddings, same share model (`-` for stdin)."),
    output: str = output_option("Output DELTA.csv (`-` for stdout)."),
    top: int = typer.Option(5, "--top", min=0, help="Print the three views (gains, losses, least changed) with K features each; 0 to skip."),
    stable_quantile: float = typer.Option(0.5, "--stable-quantile", help="'Important in both' means above this quantile in both stages (least-changed view): of importance, or of R^2 with --rank-by delta_r2."),
    rank_by: str = typer.Option("delta_importance", "--rank-by", help="Statistic for ranks, views, CIs and p-values: delta_importance (the paper) or delta_r2."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap resamples over cases for ci_low/ci_high (0: none)."),
    permutations: int = typer.Option(0, "--permutations", min=0, help="Permutations (swap pre/ft per case) for p_perm and q_bh (0: none)."),
    ci_level: float = typer.Option(0.95, "--ci-level", help="Confidence level of the bootstrap percentile interval."),
    summary: str = typer.Option(None, "--summary", help="Write the three views to this file instead of stderr."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Use the cases common to both decoders instead of failing on a mismatch."),
    seed: int = seed_option(),
    force: bool = force_option(),
):
    """Importance and decodability change, pre vs ft.

    For every radiomic column: the paper's importance I = ||theta_k,:||_2 (intercept
    excluded) before and after fine-tuning and delta_importance = I_ft - I_pre; the
    held-out decodability r2_pre, r2_ft, delta_r2 on the evaluation split; and ranks
    (rank_gain 1 = largest increase) by --rank-by. Least-squares weight norms also grow
    for features the embedding does not encode, so when n_train is not >> h prefer
    --rank-by delta_r2 (see the decoders' conditioning warnings). --bootstrap adds
    percentile CIs (cases resampled, both decoders refitted), --permutations a two-sided
    permutation p-value (each case's pre/ft embeddings swapped with probability 1/2) and
    its BH-FDR q-value. Both decoders must come from the same share model.

    \b
    DELTA.csv columns: column,modality,image_type,family,feature,importance_pre,
    importance_ft,delta_importance,r2_pre,r2_ft,delta_r2,rank_gain,rank_loss
    [,ci_low,ci_high][,p_perm,q_bh].

    Examples:

    \b
      radlens compare dec_pre.h5 dec_ft.h5 -o delta.csv
      radlens compare dec_pre.h5 dec_ft.h5 -o delta.csv --rank-by delta_r2 --permutations 200
    """
    compare(pre, ft, output, top=top, stable_quantile=stable_quantile, bootstrap=bootstrap,
            permutations=permutations, rank_by=rank_by, summary=summary, ci_level=ci_level,
            seed=seed, allow_missing=allow_missing, force=force)
