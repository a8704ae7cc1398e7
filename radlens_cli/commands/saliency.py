"""`radlens saliency`: saliency maps (Grad-CAM, Grad-CAM++, EigenCAM, ScoreCAM, occlusion) and
radiomic concept maps per case, as NIfTI on each case's grid, with a table of their numbers.

Library: saliency/ (methods, model, concept, metrics, run), encoders/preprocess.py.
"""

from __future__ import annotations

import json
import os

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (crop_option, device_option, force_option, keep_going_option, layout_option,
                                          mask_option, modalities_option, norm_option, norm_region_option,
                                          num_parts_option, orient_option, output_option, parse_triple,
                                          part_id_option, parts_option, seed_option, spacing_option,
                                          strict_geometry_option, trust_checkpoint_option, weights_option)
from radlens_cli.devices import resolve_device
from radlens_cli.encoders.infer import load_embedder
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.cases import PART_ATTR, part_record, refuse_failed_run, resolve_parts, warn_partial
from radlens_cli.io.files import check_output, check_side_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.formats.decoder import load_decoder
from radlens_cli.io.formats.share import load_share
from radlens_cli.io.manifest import parse_mask_spec, read_manifest
from radlens_cli.io.tables import read_table
from radlens_cli.lens.share import ShareModel
from radlens_cli.names import parse_list
from radlens_cli.io.runs import write_failures
from radlens_cli.saliency.concept import ConceptMaps, readout_layers, top_changed
from radlens_cli.saliency.methods import CAM_METHODS, captum, parse_methods
from radlens_cli.saliency.model import load_scored
from radlens_cli.saliency.run import Explainer, explain_cases, table_columns
from radlens_cli.saliency.tables import SALIENCY_SCHEMA, case_folder

DEFAULT_METHODS = "gradcam,gradcampp,eigencam,scorecam,occlusion"


def saliency(manifest: str, modalities: str, mask: str, encoder: str, output: str, maps: str | None = None,
             methods: str | None = DEFAULT_METHODS, layer: str | None = None, output_index: int | None = None,
             decoder: str | None = None, share: str | None = None, embeddings: str | None = None,
             features: list | None = None, compare: str | None = None, top: int = 3,
             concept_method: str = "integrated-gradients", min_r2: float = 0.3, weights: str | None = None,
             spacing=None, crop=None, norm: str | None = None, norm_region: str | None = None,
             orient: str | None = None, layout: str | None = None, batch_size: int = 8, device: str = "auto",
             part_id: int | None = None, num_parts: int | None = None, parts: str | None = None,
             failures_path: str | None = None, keep_going: bool = False, trust_checkpoint: bool = False,
             seed: int = 0, force: bool = False, strict_geometry: bool = False, deletion: bool = True) -> dict:
    """Maps and numbers for every case (of this part); see the command's help."""
    import pandas as pd
    import torch

    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.preprocess import CaseDataset, preprocessing_config

    check_output(output, force)
    if output != "-" and not output.lower().endswith((".csv", ".tsv")):
        raise UsageError(f"{output}: the saliency table is a .csv or .tsv file (or `-`)")
    check_side_output(failures_path, output, "--failures", force)
    part_id, num_parts = resolve_parts(parts, part_id, num_parts)
    method_list = parse_methods(methods) if methods else []
    concept_wanted = bool(decoder)
    if (features or compare) and not decoder:
        raise UsageError("--feature and --compare choose concept maps: give --decoder too")
    if decoder and not share:
        raise UsageError("--decoder needs the share model it was decoded through (--share)")
    if decoder and not (features or compare):
        raise UsageError("--decoder: name the features to map (--feature COL, or --compare DELTA.csv --top N)")
    if not method_list and not concept_wanted:
        raise UsageError("nothing to map: give --methods or --decoder with --feature")
    captum()
    mods = parse_list(modalities, "modalities")
    mask_spec = parse_mask_spec(mask)
    man = read_manifest(manifest)
    man.require_images(mods, mask_spec)
    dev = resolve_device(device)
    torch.manual_seed(seed)

    scored = None
    if method_list:
        scored = load_scored(encoder, device=dev, weights=weights, trust=trust_checkpoint, modalities=mods)
        if scored.source == "torchscript" and weights and any(m in CAM_METHODS for m in method_list):
            raise UsageError("the CAM methods of a TorchScript model read the weights inside the file (no --weights)")
        if scored.is_onnx:
            other = [m for m in method_list if m != "occlusion"]
            if other:
                raise UsageError(f"--methods {other[0]}: an ONNX model has no gradients or layers to hook; "
                                 f"only occlusion works on ONNX")
    concept = None
    concept_params = None
    if concept_wanted:
        dec = load_decoder(decoder, bulk=("train/Z",))
        sh = ShareModel.from_record(load_share(share))
        emb = read_table(embeddings, "embeddings", part="refuse") if embeddings else None
        cols = list(dict.fromkeys(list(features or []) + (top_changed(compare, top) if compare else [])))
        rec = json.loads(dec.attrs.get("embedding_preprocessing", "{}") or "{}")
        readout = readout_layers(sh, dec, cols, emb)
        r2 = {c: float(dec.r2[dec.columns.index(c)]) for c in cols}
        weak = [c for c in cols if not r2[c] >= min_r2]
        if weak:
            log.warn(f"{len(weak)} feature(s) decoded with R2 below {min_r2} ({', '.join(weak[:3])}); their concept "
                     f"maps show where the decoder reads noise as much as the feature (see docs/saliency.md)")
        embedder = load_embedder(encoder, layer=rec.get("layer", "final"), pool=rec.get("pool", "mean"), device=dev,
                                 trust=trust_checkpoint, modalities=mods, weights=weights)
        concept = ConceptMaps(embedder, readout, concept_method, device=dev)
        concept_params = {"decoder_r2": r2, "min_r2": min_r2, "features": cols, "concept_method": concept_method,
                          "alignment": readout.alignment, "embedding_layer": rec.get("layer", "final"),
                          "embedding_pool": rec.get("pool", "mean")}
    recorded = (scored.preprocessing if scored is not None else None)
    if recorded is None and concept is not None:
        recorded = concept.embedder.info.preprocessing
    if isinstance(spacing, str):
        spacing = parse_triple(spacing, "--spacing")
    if isinstance(crop, str):
        crop = parse_triple(crop, "--crop", int)
    cfg = preprocessing_config(mods, mask_spec, spacing, crop, norm, recorded, orient=orient, layout=layout,
                               norm_region=norm_region, warn=log.warn)
    part = man.shard(part_id, num_parts) if num_parts > 1 else man
    n = len(part)
    if n == 0 and num_parts == 1:
        raise RadlensError(f"{manifest}: no case to map")
    if maps and not force:
        taken = [c for c in part.case_ids if os.path.exists(os.path.join(maps, case_folder(str(c))))]
        if taken:
            raise UsageError(f"{maps}: already holds maps of case(s) {', '.join(map(str, taken[:3]))}; "
                             f"use --force to replace them")
    if maps:
        os.makedirs(maps, exist_ok=True)
    dataset = CaseDataset(part, cfg, failures_as_records=True, strict_geometry=strict_geometry)
    explainer = Explainer(scored, method_list, layer=layer, output_index=output_index, concept=concept,
                          batch_size=batch_size, deletion=deletion)
    explainer.prepare((1,) + cfg.tensor_shape())
    log.info(f"saliency of {n} case(s) of {manifest}: {', '.join(method_list) or 'no CAM method'}"
             + (f"; concept maps of {len(concept.readout.columns)} feature(s)" if concept else ""))
    rows, failures = explain_cases(explainer, dataset, maps)
    if failures_path:
        write_failures(failures_path, failures, force)
    if not rows and n and not (keep_going and num_parts > 1):
        raise RadlensError(f"no case succeeded ({n} tried); {output} not written"
                           + (f"; failures listed in {failures_path}" if failures_path else ""))
    refuse_failed_run(failures, n, output, keep_going, failures_path, False)
    cols = table_columns(method_list)
    if concept is not None:
        cols.append("decoder_r2")
        for r in rows:
            if r["method"].startswith("concept_"):
                r["decoder_r2"] = concept_params["decoder_r2"][r["method"][len("concept_"):]]
    df = pd.DataFrame(rows, columns=cols)
    df = df.sort_values(["case_id"], kind="stable").reset_index(drop=True)
    params = {"modalities": mods, "mask": str(mask_spec), "encoder_source": scored.source if scored else
              concept.embedder.info.source, "methods": method_list,
              "layer": explainer.info.get("layer", layer if any(m in CAM_METHODS for m in method_list) else None),
              "output_index": output_index, "task": scored.task if scored else None,
              "encoder_fingerprint": scored.fingerprint if scored else concept.embedder.fingerprint,
              "preprocessing": cfg.to_dict(), "occlusion": "windows of 1/4 of each side, side by side, baseline 0",
              "deletion": ("top k% of box voxels (k=0..100 step 10) replaced by a Gaussian blur (sigma 3 voxels)"
                           if deletion else None),
              "agreement_region": "the mask's bounding box on the model's box grid",
              "maps": "on the first modality's grid" if maps else None,
              "concept": concept_params, "batch_size": batch_size, "device": dev.type,
              "part_id": part_id, "num_parts": num_parts, "seed": seed, "keep_going": keep_going,
              "trust_checkpoint": trust_checkpoint}
    inputs = {"manifest": manifest}
    for key, path in (("encoder", encoder), ("weights", weights), ("decoder", decoder), ("share", share),
                      ("embeddings", embeddings), ("compare", compare)):
        if path and os.path.isfile(path):
            inputs[key] = path
    attrs = provenance.build("saliency", inputs=inputs, params=params)
    attrs["radlens_schema"] = SALIENCY_SCHEMA
    attrs["failures"] = json.dumps(failures)
    if part_record(part_id, num_parts):
        attrs[PART_ATTR] = json.dumps(part_record(part_id, num_parts))
    write_csv(df, output, force, provenance=attrs, float_format="%.8g",
              sep="\t" if output.lower().endswith(".tsv") else ",")
    n_cases = int(df["case_id"].nunique()) if len(df) else 0
    log.info(f"wrote {output}: {n_cases} case(s) x {df['method'].nunique() if len(df) else 0} map(s)"
             + (f"; maps under {maps}" if maps else ""))
    warn_partial(failures, n_cases, output, failures_path)
    return {"n_cases": n_cases, "rows": len(df), "layer": params["layer"], "table": df}


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
    embeddings: str = typer.Option(None, "--embeddings", help="The embeddings decode read (needed for a "
                                   "decoder with alignment, the default lens, to rebuild it)."),
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
    deletion: bool = typer.Option(True, "--deletion/--no-deletion", help="Compute deletion_auc (11 more "
                                  "forward passes per map; --no-deletion leaves the column empty)."),
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
    blurred away; lower = more faithful), and per other method spearman_<m> and
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
