"""`radlens saliency`: saliency maps (Grad-CAM, Grad-CAM++, EigenCAM, ScoreCAM, occlusion) and
radiomic concept maps per case, as NIfTI on each case's grid, with a table of their numbers.

Library: saliency.cohort.saliency_cohort (saliency/: methods, model, concept, metrics, run), encoders/preprocess.py.
"""

from __future__ import annotations

import typer

from radlens_cli.commands.app import command
from radlens_cli.commands.options import (crop_option, device_option, force_option, keep_going_option, layout_option,
                                          mask_option, modalities_option, norm_option, norm_region_option,
                                          num_parts_option, orient_option, output_option, parse_triple,
                                          part_id_option, parts_option, seed_option, spacing_option,
                                          strict_geometry_option, trust_checkpoint_option, weights_option)
from radlens_cli.errors import UsageError
from radlens_cli.io.cases import resolve_parts
from radlens_cli.io.files import check_output, check_side_output
from radlens_cli.saliency.methods import DEFAULT_METHODS


def saliency(manifest: str, modalities: str, mask: str, encoder: str, output: str, maps: str | None = None,
             methods: str | None = DEFAULT_METHODS, layer: str | None = None, output_index: int | None = None,
             decoder: str | None = None, share: str | None = None, embeddings: str | None = None,
             features: list | None = None, compare: str | None = None, top: int = 3,
             concept_method: str = "integrated-gradients", min_r2: float = 0.3, weights: str | None = None,
             spacing=None, crop=None, norm: str | None = None, norm_region: str | None = None,
             orient: str | None = None, layout: str | None = None, batch_size: int = 8, device: str = "auto",
             part_id: int | None = None, num_parts: int | None = None, parts: str | None = None,
             failures_path: str | None = None, keep_going: bool = False, trust_checkpoint: bool = False,
             seed: int = 0, force: bool = False, strict_geometry: bool = False, deletion: bool = False) -> dict:
    """Maps and numbers for every case (of this part; saliency.cohort.saliency_cohort); see the command's help."""
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.saliency.cohort import saliency_cohort

    check_output(output, force)
    if output != "-" and not output.lower().endswith((".csv", ".tsv")):
        raise UsageError(f"{output}: the saliency table is a .csv or .tsv file (or `-`)")
    check_side_output(failures_path, output, "failures", force)
    part_id, num_parts = resolve_parts(parts, part_id, num_parts)
    return saliency_cohort(manifest, modalities, mask, encoder, output, maps=maps, methods=methods, layer=layer,
                           output_index=output_index, decoder=decoder, share=share, embeddings=embeddings,
                           features=features, compare=compare, top=top, concept_method=concept_method,
                           min_r2=min_r2, weights=weights,
                           spacing=parse_triple(spacing, "--spacing") if isinstance(spacing, str) else spacing,
                           crop=parse_triple(crop, "--crop", int) if isinstance(crop, str) else crop,
                           norm=norm, norm_region=norm_region, orient=orient, layout=layout,
                           batch_size=batch_size, device=device, part=(part_id, num_parts),
                           failures_path=failures_path, keep_going=keep_going, trust_checkpoint=trust_checkpoint,
                           seed=seed, force=force, strict_geometry=strict_geometry, deletion=deletion)


@command("saliency")
def saliency_cli(
    manifest: str = typer.Argument(..., help="Cohort manifest CSV (case_id, image and mask path columns)."),
    modalities: str = modalities_option("Image columns stacked as channels, in the model's order (e.g. "
                                        "t2,dwi,adc); maps go on the first one's grid."),
    mask: str = mask_option(),
    encoder: str = typer.Option(..., "--encoder", help="A `radlens finetune` checkpoint (encoder + head), a "
                                "package.module:factory or TorchScript model with a head, or an ONNX model "
                                "(occlusion only). For concept maps: the encoder the decoder's embeddings came "
                                "from (a head is not needed)."),
    output: str = output_option("Saliency table (.csv or .tsv; `-` for stdout): one row per case and map."),
    maps: str = typer.Option(None, "--maps", help="Write the maps as DIR/<case_id>/<method>.nii.gz (and "
                             "concept_<column>.nii.gz) on the case's first-modality grid."),
    methods: str = typer.Option(DEFAULT_METHODS, "--methods", help="Comma-separated: gradcam, gradcampp, "
                                "eigencam, scorecam, occlusion; `none` for concept maps only."),
    layer: str = typer.Option(None, "--layer", help="Layer of the CAM methods: a sub-module's dotted name, "
                              "NAME#k for the k-th call of a module that runs several times [default: the "
                              "last stage]."),
    output_index: int = typer.Option(None, "--output-index", min=0, help="Output explained: the class "
                                     "(classify; default the predicted one), the channel (segment; default "
                                     "the foreground, its mean logit inside the mask); regress has one."),
    decoder: str = typer.Option(None, "--decoder", help="DEC.h5 from `radlens decode` of this encoder's "
                                "embeddings: draw concept maps of its decoded features."),
    share: str = typer.Option(None, "--share", help="SHARE.h5 the decoder was decoded through."),
    embeddings: str = typer.Option(None, "--embeddings", help="The embeddings decode read: checks the rebuilt "
                                   "lens against the decoder's stored Z (needed for a calibrated-0.2 decoder, "
                                   "to rebuild its alignment)."),
    feature: list[str] = typer.Option(None, "--feature", help="Radiomic column to map (repeatable)."),
    compare: str = typer.Option(None, "--compare", help="DELTA.csv from `radlens compare`: map the --top "
                                "most gained and most lost features."),
    top: int = typer.Option(3, "--top", min=1, help="With --compare: how many gained and lost features."),
    concept_method: str = typer.Option("integrated-gradients", "--concept-method", help="integrated-gradients "
                                       "(16 steps from a zero input) or gradient (gradient x input)."),
    min_r2: float = typer.Option(0.3, "--min-r2", help="Warn about features decoded with a held-out R2 below "
                                 "this (their maps are not meaningful; docs/saliency.md)."),
    weights: str = weights_option(),
    spacing: str = spacing_option(),
    crop: str = crop_option(),
    norm: str = norm_option(),
    norm_region: str = norm_region_option(),
    orient: str = orient_option(),
    layout: str = layout_option(),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Perturbed inputs per forward pass "
                                   "(ScoreCAM, occlusion, deletion)."),
    device: str = device_option(),
    parts: str = parts_option(),
    part_id: int = part_id_option(),
    num_parts: int = num_parts_option(),
    failures: str = typer.Option(None, "--failures", help="Also write the failed cases as CSV."),
    keep_going: bool = keep_going_option(),
    trust_checkpoint: bool = trust_checkpoint_option(),
    seed: int = seed_option(),
    force: bool = force_option(),
    strict_geometry: bool = strict_geometry_option(),
    deletion: bool = typer.Option(False, "--deletion/--no-deletion", help="Also compute deletion_auc: 9 more "
                                  "forward passes per map and 1 per case, about 2x the time of Grad-CAM alone "
                                  "[default: off, the column empty]."),
):
    """Saliency and radiomic concept maps per case.

    For a model with a head (a finetune checkpoint, a factory or TorchScript model),
    maps of one output per case -- the predicted class's logit, the regression output,
    or the mean foreground logit inside the mask -- by Grad-CAM, Grad-CAM++, EigenCAM
    and ScoreCAM at --layer (default the last stage) and by occlusion (ONNX models:
    occlusion only). With --decoder/--share, concept maps: where in the input the
    encoder's decoded radiomic feature (as decode computes it) is read, by integrated
    gradients. Needs radlens[saliency] (Captum).

    Maps are resampled from the model's box onto each case's first-modality image and
    written as DIR/<case_id>/<name>.nii.gz (same origin, spacing, direction). The table
    has per case and map: output_index, output, mass_in_mask (fraction of the positive
    map inside the mask), deletion_auc (the output as the top 0..100 % voxels are
    blurred away; lower = more faithful; with --deletion), and per other method spearman_<m> and
    iou10_<m> (top 10 % voxels) over the mask's bounding box.

    Cases fail one at a time as in embed (--keep-going, --failures); --parts slurm does
    one part, `radlens merge` joins the tables. docs/saliency.md says how to read them.

    Examples:

    \b
      radlens saliency cohort.csv --modalities t2,dwi,adc --mask gland --encoder ft.pt \\
          --maps maps -o saliency.csv
      radlens saliency cohort.csv --modalities t2,dwi,adc --mask gland --encoder ft.pt \\
          --methods none --decoder dec_ft.h5 --share share.h5 --embeddings emb_ft.h5 \\
          --compare delta.csv --top 3 --maps maps_ft -o concept_ft.csv
    """
    saliency(manifest, modalities, mask, encoder, output, maps=maps,
             methods=None if methods.strip().lower() == "none" else methods, layer=layer,
             output_index=output_index, decoder=decoder, share=share, embeddings=embeddings, features=feature,
             compare=compare, top=top, concept_method=concept_method, min_r2=min_r2, weights=weights,
             spacing=spacing, crop=crop, norm=norm, norm_region=norm_region, orient=orient, layout=layout,
             batch_size=batch_size, device=device, part_id=part_id, num_parts=num_parts, parts=parts,
             failures_path=failures, keep_going=keep_going, trust_checkpoint=trust_checkpoint, seed=seed,
             force=force, strict_geometry=strict_geometry, deletion=deletion)
