"""The Radiomic Lens method, usable without the CLI (e.g. in a notebook; docs/python.md).

One function per step, on in-memory data (case tables, arrays, small objects):

    from radlens_cli import lens
    share = lens.fit_share(emb_pre, rad)              # fit-share
    dec_pre = lens.decode(share, emb_pre, rad)        # decode
    dec_ft = lens.decode(share, emb_ft, rad)
    lens.compare_decoders(dec_pre, [dec_ft]).table    # compare: DELTA.csv's rows
    lens.group_stats(dec_pre, [dec_ft])               # stats: Table 1

share:    fit_share, fit_scaler, train_share, ShareModel (fit_share_tables: fit_share's 0.2 name);
          fit_share_params, share_summary, sweep_table (what fit-share records and says)
decode:   decode, DecodeResult, decode_summary, fit_decoder, importance, r2_score, choose_ridge,
          fit_alignment (the calibrated lens's Procrustes onto the pre-trained basis)
compare:  compare_decoders, Comparison, pair_decoders, delta_table, paired_test,
          three_views, permutation_test, bootstrap_ci
stats:    group_stats, group_table, markdown_table
probe:    probe_tables, ProbeOptions (radlens probe on case tables)
correlate: correlate_tables, TableCorrelation (radlens correlate on case tables)
cka:      cka_tables (radlens cka on two case tables)

The lens takes and returns arrays and objects; it reads and writes no file. Its objects
serialise to plain data (ShareModel.to_record/from_record, DecodeResult.to_record) that
radlens_cli.io.formats.share (save_share, load_share) and radlens_cli.io.formats.decoder
(save_decoder, load_decoder -> DecoderFile, which compare_decoders takes as it takes a
DecodeResult) write and read:

    share = lens.ShareModel.from_record(load_share("share.h5"))
"""

from radlens_cli.lens.align import Alignment, fit_alignment
from radlens_cli.lens.cka import cka_tables
from radlens_cli.lens.compare import (Comparison, bootstrap_ci, compare_decoders, delta_table, pair_decoders,
                                      paired_test, permutation_test, ranks, require_same_share, solve_moments,
                                      three_views)
from radlens_cli.lens.correlate import TableCorrelation, correlate_tables
from radlens_cli.lens.decoder import Decoder, choose_ridge, conditioning, fit_decoder, importance, r2_score
from radlens_cli.lens.fdr import bh_fdr, stars
from radlens_cli.lens.probe import ProbeOptions, probe_tables
from radlens_cli.lens.scaling import Scaler, fit_scaler
from radlens_cli.lens.share import ShareModel, paper_grid, train_share
from radlens_cli.lens.stats import group_stats, group_table, markdown_table
from radlens_cli.lens.steps import (DecodeResult, decode, decode_summary, fit_share, fit_share_params,
                                   fit_share_tables, join, share_summary, sweep_table)
from radlens_cli.names import parse_column_names

__all__ = [
    "Alignment", "Comparison", "choose_ridge", "compare_decoders", "fit_alignment", "fit_share",
    "group_table", "pair_decoders", "paired_test",
    "Decoder", "DecodeResult", "Scaler", "ShareModel", "bh_fdr", "bootstrap_ci",
    "conditioning", "decode", "delta_table", "fit_decoder", "fit_scaler",
    "fit_share_tables", "fit_share_params", "decode_summary", "share_summary", "sweep_table", "group_stats", "importance", "join",
    "markdown_table", "paper_grid", "ProbeOptions", "probe_tables", "TableCorrelation", "correlate_tables", "cka_tables", "parse_column_names", "permutation_test", "r2_score",
    "ranks", "require_same_share", "solve_moments", "stars",
    "three_views", "train_share",
]
