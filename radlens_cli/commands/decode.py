"""`radlens decode`: closed-form linear radiomic decoder on the frozen share space.

Library: lens.decode (lens/steps.py; lens/decoder.py the closed-form solve, lens/align.py the
alignment to the pre-trained basis), io/formats/decoder.py.
"""

from __future__ import annotations

import typer

from radlens_cli import lens, log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (allow_different_preprocessing_option, allow_missing_option, device_option,
                                          force_option, output_option)
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats.decoder import save_decoder
from radlens_cli.io.formats.share import load_share
from radlens_cli.lens.resplit import protocol_of
from radlens_cli.io.tables import read_table


def decode(share_path: str, emb_path: str, rad_path: str, output: str, ridge: float | None = None,
           intercept: bool | None = None, eval_split: str = "test", allow_missing: bool = False,
           force: bool = False, align: str | None = None,
           allow_different_preprocessing: bool = False, device: str = "auto"):
    """Decode one embedding file through share; write DEC.h5; returns the DecodeResult."""
    if [share_path, emb_path, rad_path].count("-") > 1:
        raise UsageError("only one input can be `-` (stdin)")
    check_output(output, force, suffix=(".h5", ".hdf5"))
    share = lens.ShareModel.from_record(load_share(share_path))
    emb = read_table(emb_path, "embeddings", part="refuse")
    rad = read_table(rad_path, "radiomics", part="refuse")
    symmetric = share.method == "symmetric"
    total = 0
    if symmetric:
        total = protocol_of(share).epochs
    with log.progress(total=total, desc="decode", unit="epoch") as bar:
        res = lens.decode(share, emb, rad, ridge=ridge, intercept=intercept, eval_split=eval_split,
                          allow_missing=allow_missing, warn=log.warn, align=align,
                          allow_different_preprocessing=allow_different_preprocessing,
                          device=device, progress=lambda: bar.update(1))
    params = {"ridge": ridge, "ridge_used": res.decoder.ridge, "intercept": res.decoder.intercept,
              "eval_split": eval_split, "allow_missing": allow_missing, "method": res.method,
              "align": res.alignment.kind if res.alignment is not None else "none",
              "allow_different_preprocessing": allow_different_preprocessing,
              # the encoder behind the embeddings, so a report names a checkpoint's task by hash
              "encoder": provenance.input_records(emb.attrs).get("encoder"),
              # what the cohort can support (lens/power.py); compare and report carry it on
              "power": res.power.to_dict() if res.power is not None else None}
    emb_params = provenance.json_attr(emb.attrs, "params", {})
    if isinstance(emb_params, dict) and "finetune" in emb_params:   # embeddings made since embed records it
        params["encoder_finetune"] = emb_params["finetune"]
    if symmetric:
        params.update({"device": device, "same_information": res.same_information,
                       "embedding_scale": res.embedding_scale})
    attrs = provenance.build("decode", inputs={"share": share_path, "embeddings": emb_path,
                                               "radiomics": rad_path}, params=params,
                             history=provenance.merged_history(share.attrs, emb.attrs, rad.attrs))
    save_decoder(res, output, attrs=attrs, force=force)
    log.info(lens.decode_summary(res, eval_split))
    return res


@command("decode")
def decode_cli(
    share: str = typer.Argument(..., metavar="SHARE", help="Share model from fit-share (`-` for stdin)."),
    embeddings: str = typer.Argument(..., metavar="EMB", help="Embeddings to decode, pre or fine-tuned (case table; `-` for stdin)."),
    radiomics: str = typer.Argument(..., metavar="RADIOMICS", help="Radiomics case table holding the share model's columns (`-` for stdin)."),
    output: str = output_option("Output DEC.h5 (`-` for stdout)."),
    ridge: float = typer.Option(None, "--ridge", help="(calibrated-0.2 and paper shares) Ridge penalty alpha on theta (default: the alpha stored in SHARE, the same for every checkpoint; 0: plain least squares, the paper)."),
    intercept: bool = typer.Option(None, "--intercept/--no-intercept", help="Bias column, R ~ theta [Z; 1] (default with --method calibrated shares) or the paper's R = theta Z (default with --method paper shares)."),
    align: str = typer.Option(None, "--align", help="Map the embeddings onto the pre-trained embeddings before share, fitted on the embeddings (not the radiomics) of every case both hold: similarity (orthogonal Procrustes + one scale + shift; default with calibrated shares), whitened (Procrustes between whitened embeddings: also undoes per-dimension rescaling, but reads gained information as weaker; see docs/validity.md) or none (the paper; default with --method paper shares)."),
    allow_different_preprocessing: bool = allow_different_preprocessing_option("Decode embeddings whose recorded preprocessing (spacing, crop, normalisation, layer, pooling...) differs from the share model's pre-trained embeddings (e.g. another foundation model on purpose)."),
    eval_split: str = typer.Option("test", "--eval-split", help="Split on which predictions, errors and R^2 are reported (calibrated-0.2 and paper shares)."),
    device: str = device_option(),
    allow_missing: bool = allow_missing_option(),
    force: bool = force_option(),
):
    """Fit the linear radiomic decoders of one checkpoint.

    With a --method symmetric SHARE (the default of fit-share): for every re-split the
    SHARE records, this checkpoint's own share is fitted on the re-split's share cases
    from the same seeded initialisation as the pre-trained checkpoint's (all re-splits as
    one batched model, on --device), after centring the embeddings and scaling them to the
    pre-trained embeddings' total variance; the decoder (intercept, ridge alpha by
    generalised cross-validation) is fitted on the decoder cases and R^2 read on the test
    cases. Embeddings equal to the pre-trained ones, or an exact invertible affine map of
    them (rotation, permutation, per-dimension scale, shift: the same information), are
    read through the pre-trained checkpoint's own shares, so every change is exactly 0.
    DEC.h5 then also holds, per re-split, R^2, MSE, importance, alpha and the per-case
    squared errors of the test cases (group `resplit`); theta and the train/eval arrays
    are those of re-split 0.
    With a --method calibrated-0.2 SHARE: Z = share(X) of the one pre-trained share,
    after aligning the embeddings to the pre-trained ones (X -> s (X - mean) Q + mean_ref,
    Q orthogonal, fitted on the embeddings of every case both hold: no radiomics), the
    decoder solved on the `train` split in closed form (ridge on the normal equations,
    eigendecomposition of Z^T Z; never an explicit inverse) with the SHARE's alpha and an
    intercept; a share-free control (ridge from the embeddings) is stored as r2_direct.
    With a --method paper SHARE: no alignment, no intercept (R = theta Z), no ridge.
    Importance never includes the intercept. With calibrated-0.2 shares, also fits a
    share-free control (ridge from the embeddings, alpha by generalised cross-validation)
    whose R^2 is stored as r2_direct. Refuses embeddings whose recorded preprocessing
    differs from the share model's.
    Warns when n_train < 5*h (plain least squares) or Z_train is ill-conditioned, and in
    one line when the cohort cannot support the lens (fewer than 2(h+1) decoder cases,
    rank-deficient Z_train, effective degrees of freedom above half the cases, alpha at an
    end of the GCV grid, fewer than 20 evaluation cases: docs/validity.md); the verdict is
    recorded (params.power) and the report's headline repeats it.
    Writes DEC.h5 (schema decoder/1): theta, the share_hash, per-feature R^2 and MSE on
    the evaluation cases, per-case predictions, targets and squared errors (scaled
    units), conditioning diagnostics, and the train/eval Z and targets.

    Examples:

    \b
      radlens decode share.h5 emb_pre.h5 radiomics.h5 -o dec_pre.h5
      radlens decode share.h5 emb_ft.h5 radiomics.h5 -o dec_ft.h5
    """
    decode(share, embeddings, radiomics, output, ridge=ridge, intercept=intercept,
           eval_split=eval_split, allow_missing=allow_missing, force=force, align=align,
           allow_different_preprocessing=allow_different_preprocessing, device=device)
