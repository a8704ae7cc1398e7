"""The Radiomic Lens method, usable without the CLI (e.g. in a notebook).

    from radlens_cli.lens import fit_share_tables, decode, delta_table

share:    fit_scaler, train_share, fit_share_tables, ShareModel
decode:   fit_decoder, decode, importance, r2_score, choose_ridge,
          fit_alignment (the calibrated lens's Procrustes onto the pre-trained basis)
compare:  delta_table, paired_test, three_views, permutation_test, bootstrap_ci
stats:    group_stats, markdown_table

The lens takes and returns arrays and objects; it reads and writes no file. SHARE.h5 and
DEC.h5 are read and written by radlens_cli.io.formats.share (save_share, load_share) and
radlens_cli.io.formats.decoder (save_decoder, load_decoder, DecoderFile).
"""

from radlens_cli.lens.align import Alignment, fit_alignment
from radlens_cli.lens.compare import (bootstrap_ci, delta_table, paired_test, permutation_test,
                                      ranks, require_same_share, solve_moments, three_views)
from radlens_cli.lens.steps import DecodeResult, decode, fit_share_tables, join
from radlens_cli.lens.decoder import (Decoder, choose_ridge, conditioning, fit_decoder, importance,
                                      r2_score)
from radlens_cli.lens.fdr import bh_fdr, stars
from radlens_cli.lens.names import column_meta, parse_column_names
from radlens_cli.lens.scaling import Scaler, fit_scaler
from radlens_cli.lens.share import ShareModel, paper_grid, train_share
from radlens_cli.lens.stats import group_stats, markdown_table

__all__ = [
    "Alignment", "choose_ridge", "fit_alignment", "paired_test",
    "Decoder", "DecodeResult", "Scaler", "ShareModel", "bh_fdr", "bootstrap_ci",
    "column_meta", "conditioning", "decode", "delta_table", "fit_decoder", "fit_scaler",
    "fit_share_tables", "group_stats", "importance", "join",
    "markdown_table", "paper_grid", "parse_column_names", "permutation_test", "r2_score",
    "ranks", "require_same_share", "solve_moments", "stars",
    "three_views", "train_share",
]
