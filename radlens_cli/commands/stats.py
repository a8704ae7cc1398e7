"""`radlens stats`: the paper's Table 1 (MSE, R^2, Wilcoxon) per radiomic group."""

from __future__ import annotations

import typer

from radlens_cli import log
from radlens_cli.commands._util import command, force_option, output_option
from radlens_cli.errors import RadlensError, UsageError


def stats(pre_path: str, ft_path: str, output: str, by: str = "family,image_type,modality,modality_family",
          fmt: str = "csv", allow_missing: bool = False, force: bool = False):
    """Write the group table for two decoders of one share model; returns the DataFrame."""
    from radlens_cli.commands.compare import paired_cases
    from radlens_cli.io.files import atomic_output, check_output
    from radlens_cli.io.manifest import parse_list
    from radlens_cli.lens.compare import require_same_share
    from radlens_cli.lens.data import load_decoder
    from radlens_cli.lens.decoder import r2_score
    from radlens_cli.lens.stats import GROUPINGS, group_stats, markdown_table

    if pre_path == "-" and ft_path == "-":
        raise UsageError("only one input can be `-` (stdin)")
    groupings = parse_list(by, "--by")
    bad = [g for g in groupings if g not in GROUPINGS]
    if bad or not groupings:
        raise UsageError(f"--by: unknown grouping {', '.join(bad) or '(empty)'} "
                         f"(choose from {', '.join(GROUPINGS)})")
    if fmt not in ("csv", "markdown"):
        raise UsageError(f"--format must be csv or markdown, not {fmt!r}")
    check_output(output, force)
    pre, ft = load_decoder(pre_path), load_decoder(ft_path)
    require_same_share(pre, ft)
    if pre.attrs.get("eval_split") != ft.attrs.get("eval_split"):
        raise RadlensError(f"{pre.path} and {ft.path} were evaluated on different splits")
    ip, jf = paired_cases(pre, ft, "eval", allow_missing)
    full = len(ip) == len(pre.eval_case_id) == len(ft.eval_case_id)
    names = ("eval/squared_error",) if full else ("eval/squared_error", "eval/prediction", "eval/target")
    bp, bf = load_decoder(pre_path, bulk=names).bulk, load_decoder(ft_path, bulk=names).bulk
    sq_pre, sq_ft = bp["eval/squared_error"][ip], bf["eval/squared_error"][jf]
    if full:                 # the per-feature R^2 decode computed on these same cases
        r2_pre, r2_ft = pre.r2, ft.r2
    else:
        log.warn(f"--allow-missing: using the {len(ip)} eval cases common to both decoders")
        r2_pre = r2_score(bp["eval/prediction"][ip], bp["eval/target"][ip])
        r2_ft = r2_score(bf["eval/prediction"][jf], bf["eval/target"][jf])
    df = group_stats(sq_pre, sq_ft, r2_pre, r2_ft, pre.column_meta, by=groupings)
    with atomic_output(output, force, suffix=".md" if fmt == "markdown" else ".csv") as tmp:
        if fmt == "markdown":
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(markdown_table(df))
        else:
            df.to_csv(tmp, index=False, float_format="%.10g")
    return df


@command("stats")
def stats_cli(
    pre: str = typer.Argument(..., metavar="DEC_PRE", help="Decoder of the pre-fine-tuning embeddings (`-` for stdin)."),
    ft: str = typer.Argument(..., metavar="DEC_FT", help="Decoder of the fine-tuned embeddings, same share model (`-` for stdin)."),
    output: str = output_option("Output table (`-` for stdout)."),
    by: str = typer.Option("family,image_type,modality,modality_family", "--by", help="Comma-separated groupings: family, image_type (original vs wavelet), modality, modality_family."),
    fmt: str = typer.Option("csv", "--format", help="csv, or markdown for the paper's Table 1 layout."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Use the eval cases common to both decoders instead of failing on a mismatch."),
    force: bool = force_option(),
):
    """Table 1: MSE, R^2 and Wilcoxon test per group.

    On the decoders' evaluation split, one row per group: group MSE over its features and
    cases, group R^2 = mean of per-feature R^2, for the pre-trained and the fine-tuned
    embeddings; a two-sided Wilcoxon signed-rank test on each case's squared error
    averaged over the group's features (pre vs ft); stars * <0.05 ** <0.01 *** <0.001;
    BH-FDR q-values across the whole table. Wavelet sub-bands are pooled into `wavelet`.

    \b
    Columns: group_by,group,n_features,mse_pre,r2_pre,mse_ft,r2_ft,wilcoxon_p,stars,q_bh

    Examples:

    \b
      radlens stats dec_pre.h5 dec_ft.h5 -o table.csv
      radlens stats dec_pre.h5 dec_ft.h5 -o - --format markdown --by family,image_type
    """
    stats(pre, ft, output, by=by, fmt=fmt, allow_missing=allow_missing, force=force)
