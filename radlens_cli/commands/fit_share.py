"""`radlens fit-share`: train the shared non-linear projection on pre-fine-tuning embeddings.

Library: lens.fit_share (lens/steps.py; lens/share.py the share model and its lambda sweep,
lens/scaling.py), io/formats/share.py.
"""

from __future__ import annotations

import typer

from radlens_cli import lens, log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import allow_missing_option, device_option, force_option, output_option, seed_option
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.formats.share import save_share
from radlens_cli.io.tables import read_table
from radlens_cli.lens import resplit as rsp
from radlens_cli.lens.share import METHOD_ALIASES


def fit_share(emb_path: str, rad_path: str, output: str, hidden: int | None = None, l1: float = 1e-6,
              l2: float = 1e-5, epochs: int | None = None, lr: float | None = None,
              sweep: bool = False,
              sweep_scores: str | None = None, scale: str | None = None, activation: str = "relu",
              batch_size: int = 256, seed: int = 0, device: str = "auto",
              allow_missing: bool = False, force: bool = False, method: str = "symmetric",
              loss_reduction: str = "mean", seeds: int = 1, share_fraction: float | None = None,
              resplits: int | None = None, test_fraction: float | None = None):
    """Fit share (lens.fit_share; and the temporary heads) and write SHARE.h5; returns the ShareModel."""
    if emb_path == "-" and rad_path == "-":
        raise UsageError("only one input can be `-` (stdin)")
    if sweep_scores and not sweep:
        raise UsageError("--sweep-scores needs --sweep")
    if sweep_scores == "-" and output == "-":
        raise UsageError("--sweep-scores and --output cannot both be `-` (stdout)")
    check_output(output, force, suffix=(".h5", ".hdf5"))
    if sweep_scores:
        check_output(sweep_scores, force, suffix=".csv")
    emb = read_table(emb_path, "embeddings", part="refuse")
    rad = read_table(rad_path, "radiomics", part="refuse")
    symmetric = METHOD_ALIASES.get(method, method) == "symmetric"
    n_epochs = (epochs or (rsp.EPOCHS if symmetric else 200)) * (1 if symmetric else max(seeds, 1))
    with log.progress(total=n_epochs, desc="fit-share", unit="epoch") as bar:
        model = lens.fit_share(emb, rad, hidden=hidden, l1=l1, l2=l2, sweep=sweep, epochs=epochs,
                               lr=lr, scale=scale, activation=activation, batch_size=batch_size,
                               seed=seed, device=device, allow_missing=allow_missing,
                               progress=lambda: bar.update(1), warn=log.warn, method=method,
                               loss_reduction=loss_reduction, seeds=seeds,
                               share_fraction=share_fraction, n_resplits=resplits,
                               test_fraction=test_fraction)
    params = lens.fit_share_params(model, output, epochs=epochs, lr=lr, sweep=sweep, method=method,
                                   loss_reduction=loss_reduction, seeds=seeds, activation=activation,
                                   batch_size=batch_size, seed=seed, device=device,
                                   allow_missing=allow_missing, warn=log.warn, info=log.info)
    history = provenance.merged_history(emb.attrs, rad.attrs)
    inputs = {"embeddings": emb_path, "radiomics": rad_path}
    attrs = provenance.build("fit-share", inputs=inputs, params=params, history=history)
    provenance.declare("fit-share", inputs=inputs, params=params, history=history)
    if sweep_scores:
        write_csv(lens.sweep_table(model), sweep_scores, force)
    save_share(model, output, attrs=attrs, force=force)
    log.info(lens.share_summary(model, method, activation))
    return model


@command("fit-share")
def fit_share_cli(
    embeddings: str = typer.Argument(..., metavar="EMB_PRE", help="Pre-fine-tuning embeddings (case table, HDF5 or CSV; `-` for stdin)."),
    radiomics: str = typer.Argument(..., metavar="RADIOMICS", help="Radiomics case table (HDF5 or CSV; `-` for stdin)."),
    output: str = output_option("Output SHARE.h5 (`-` for stdout)."),
    hidden: int = typer.Option(None, "--hidden", min=1, help="Hidden units h of share (default: from the cohort, min(256, max(8, decoder train cases // 2 - 1)): two decoder cases per coefficient; recorded as hidden_from_rule). Fewer decoder cases than 2(h+1) is warned about as underpowered."),
    l1: float = typer.Option(1e-6, "--l1", min=0.0, help="L1 penalty on all weights of share and heads (biases excluded)."),
    l2: float = typer.Option(1e-5, "--l2", min=0.0, help="Squared-L2 penalty on all weights of share and heads (biases excluded)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Training epochs (Adam): default 150 full-batch steps per share with --method symmetric, 200 epochs of --batch-size with the others."),
    lr: float = typer.Option(None, "--lr", min=0.0, help="Adam learning rate (default 6e-3 with --method symmetric, 1e-3 with the others)."),
    sweep: bool = typer.Option(False, "--sweep", help="Train the paper's 6x4 (l1, l2) grid as one batched model and keep the one with the lowest validation L1; --l1/--l2 are then ignored."),
    sweep_scores: str = typer.Option(None, "--sweep-scores", help="Also write the grid's scores to this CSV (with --sweep)."),
    scale: str = typer.Option(None, "--scale", help="Radiomics scaling with train statistics: zscore (default of --method symmetric and calibrated-0.2) or minmax (the paper, [0,1]; default of --method paper)."),
    method: str = typer.Option("symmetric", "--method", help="symmetric (default: every checkpoint gets its own share per re-split, fitted on the same cases from the same seed, its own ridge alpha, and is read over --resplits random re-splits; a flag means a change beyond what re-encoding the same information makes, docs/validity.md), calibrated-0.2 (0.2.0's default: one share fitted on the pre-trained embeddings, every checkpoint aligned to them; reproduces published 0.2 results) or paper (the paper exactly: min-max, no intercept, no alignment, no ridge)."),
    resplits: int = typer.Option(None, "--resplits", help="--method symmetric: number of random re-splits of the train and test cases into share / decoder / test parts (default 10)."),
    share_fraction: float = typer.Option(None, "--share-fraction", help="Fraction of the cases share is fitted on: of the re-split cases with --method symmetric (default 0.4), of the train cases with calibrated-0.2 (default 0.5; decoders on the other train cases) and paper (default 1: the paper fits both on all train cases)."),
    test_fraction: float = typer.Option(None, "--test-fraction", help="--method symmetric: fraction of the re-split cases R^2 is read on (default 0.3); the decoders are fitted on the rest."),
    seeds: int = typer.Option(1, "--seeds", help="(calibrated-0.2 and paper) Train K share initialisations (seeds --seed .. --seed+K-1, at the selected lambdas); decode decodes through each and compare reports delta_r2_mean/_sd across them and the rank stability between seeds."),
    loss_reduction: str = typer.Option("mean", "--loss-reduction", help="L1 data term: mean over cases and columns (default, PyTorch's L1Loss) or sum over columns averaged over cases. val_l1/train_l1 use the same reduction."),
    activation: str = typer.Option("relu", "--activation", help="Non-linearity of share: relu, gelu or tanh (the paper does not name it)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Cases per Adam step; 0 for full batch (calibrated-0.2 and paper; the symmetric lens's fits, its --sweep's included, are full batch)."),
    allow_missing: bool = allow_missing_option(),
    seed: int = seed_option(),
    device: str = device_option(),
    force: bool = force_option(),
):
    """Train share on the pre-fine-tuning embeddings.

    Learns f(X) = head(share(X)) with share = Linear(d, h) + non-linearity and one linear
    head over all modalities' radiomic columns, minimising the L1 reconstruction error
    (mean over cases and columns; --loss-reduction sum for the per-case sum over columns)
    plus l1*|w| + l2*w^2 over all weights (the paper's eq. 5), with Adam on the `train`
    split. Radiomics are z-scored (--method symmetric, calibrated-0.2) or min-max scaled
    (--method paper) with train statistics; columns constant or non-finite on train are
    dropped and listed.
    --method symmetric (default) records a protocol rather than one model: --resplits
    seeded random re-splits of the train and test cases into share (--share-fraction,
    0.4), decoder and test (--test-fraction, 0.3) parts, the share settings, and the
    pre-trained checkpoint's own share on every re-split (150 full-batch Adam steps each,
    all re-splits as one batched model; --device). decode repeats the same fits for every
    other checkpoint, so a flag of compare/stats means a change beyond what re-encoding
    the same information makes (docs/validity.md).
    --method calibrated-0.2 is 0.2.0's default: one share on half of the train cases,
    the pre-trained embeddings of every case (decode aligns every checkpoint to them) and
    one ridge alpha (generalised cross-validation) for every decoder.
    --method paper reproduces the paper (min-max, no intercept, no alignment, share and
    decoders on all train cases).
    With --sweep, the paper's grid l1 in {0,1e-7,3e-7,1e-6,3e-6,1e-5} x l2 in
    {0,1e-5,1e-4,1e-3} is trained at once and selected on `val` reconstruction; the
    spread between the best and worst grid points is reported, with a warning when it
    is under 5 % of the best validation L1 (the choice is then noise).
    Writes SHARE.h5 (schema share-model/1): share's weights (with --method symmetric,
    every re-split's, the re-splits and the settings), scaling, kept and dropped
    columns, grid scores and a share_hash; the heads are discarded.

    Examples:

    \b
      radlens fit-share emb_pre.h5 radiomics.h5 -o share.h5
      radlens fit-share emb_pre.h5 radiomics.h5 -o share.h5 --sweep --sweep-scores sweep.csv
      radlens fit-share emb_pre.h5 radiomics.h5 -o share_paper.h5 --method paper
      radlens fit-share emb_pre.h5 radiomics.h5 -o share_02.h5 --method calibrated-0.2
    """
    fit_share(embeddings, radiomics, output, hidden=hidden, l1=l1, l2=l2, epochs=epochs, lr=lr,
              sweep=sweep, sweep_scores=sweep_scores, scale=scale, activation=activation,
              batch_size=batch_size, seed=seed, device=device, allow_missing=allow_missing,
              force=force, method=method, loss_reduction=loss_reduction, seeds=seeds,
              share_fraction=share_fraction, resplits=resplits, test_fraction=test_fraction)
