"""A cohort's saliency: `saliency_cohort`, what `radlens saliency` runs -- the models (the
scored model of the CAM methods, the concept maps' share and decoder), the preprocessed
cases of one part, the per-case loop (run.py), the table with its provenance, the maps and
the failures."""

from __future__ import annotations

import json
import os

import pandas as pd
import torch

from radlens_cli import log, provenance
from radlens_cli.devices import resolve_device
from radlens_cli.encoders.infer import load_embedder
from radlens_cli.encoders.preprocess import CaseDataset, preprocessing_config
from radlens_cli.errors import ParameterError, RadlensError
from radlens_cli.io.cases import PART_ATTR, part_record, refuse_failed_run, warn_partial
from radlens_cli.io.formats import write_csv
from radlens_cli.io.formats.decoder import load_decoder
from radlens_cli.io.formats.share import load_share
from radlens_cli.io.manifest import parse_mask_spec, read_manifest
from radlens_cli.io.runs import write_failures
from radlens_cli.io.tables import read_table
from radlens_cli.lens.share import ShareModel
from radlens_cli.names import parse_list
from radlens_cli.saliency.concept import ConceptMaps, decoder_r2, readout_layers, top_changed
from radlens_cli.saliency.methods import CAM_METHODS, DEFAULT_METHODS, captum, parse_methods
from radlens_cli.saliency.model import load_scored
from radlens_cli.saliency.run import Explainer, explain_cases, table_columns
from radlens_cli.saliency.tables import SALIENCY_SCHEMA, case_folder

FEATURE = {"features": "--feature"}   # the flag's name is singular (it repeats)


def saliency_cohort(manifest: str, modalities: str, mask: str, encoder: str, output: str, maps: str | None = None,
                    methods: str | None = DEFAULT_METHODS, layer: str | None = None, output_index: int | None = None,
                    decoder: str | None = None, share: str | None = None, embeddings: str | None = None,
                    features: list | None = None, compare: str | None = None, top: int = 3,
                    concept_method: str = "integrated-gradients", min_r2: float = 0.3, weights: str | None = None,
                    spacing=None, crop=None, norm: str | None = None, norm_region: str | None = None,
                    orient: str | None = None, layout: str | None = None, batch_size: int = 8,
                    device: str = "auto", part: tuple[int, int] = (0, 1), failures_path: str | None = None,
                    keep_going: bool = False, trust_checkpoint: bool = False, seed: int = 0, force: bool = False,
                    strict_geometry: bool = False, deletion: bool = False) -> dict:
    """Maps and numbers for every case of a cohort manifest (or of part (part_id, num_parts)):
    what `radlens saliency` runs (see its help), writing the table `output` (whose name the
    caller checked), the maps under `maps` and the failures CSV. spacing and crop: (x, y, z)
    or None. Returns n_cases, rows, layer and the table."""
    part_id, num_parts = part
    method_list = parse_methods(methods) if methods else []
    concept_wanted = bool(decoder)
    if (features or compare) and not decoder:
        raise ParameterError("{features} and {compare} choose concept maps: give {decoder} too", "features", "compare",
                             "decoder", flags=FEATURE)
    if decoder and not share:
        raise ParameterError("{decoder} needs the share model it was decoded through ({share})", "decoder", "share")
    if decoder and not (features or compare):
        raise ParameterError("{decoder}: name the features to map ({features} COL, or {compare} DELTA.csv {top} N)",
                             "decoder", "features", "compare", "top", flags=FEATURE)
    if not method_list and not concept_wanted:
        raise ParameterError("nothing to map: give {methods} or {decoder} with {features}", "methods", "decoder",
                             "features", flags=FEATURE)
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
            raise ParameterError("the CAM methods of a TorchScript model read the weights inside the file (no {weights})",
                                 "weights")
        if scored.is_onnx:
            other = [m for m in method_list if m != "occlusion"]
            if other:
                raise ParameterError(f"{{methods}} {other[0]}: an ONNX model has no gradients or layers to hook; "
                                     f"only occlusion works on ONNX", "methods")
    concept = None
    concept_params = None
    if concept_wanted:
        dec = load_decoder(decoder, bulk=("train/Z",))
        sh = ShareModel.from_record(load_share(share))
        emb = read_table(embeddings, "embeddings", part="refuse") if embeddings else None
        cols = list(dict.fromkeys(list(features or []) + (top_changed(compare, top) if compare else [])))
        rec = json.loads(dec.attrs.get("embedding_preprocessing", "{}") or "{}")
        readout = readout_layers(sh, dec, cols, emb)
        r2 = decoder_r2(dec, cols)
        weak = [c for c in cols if not r2[c] >= min_r2]
        if weak:
            log.warn(f"{len(weak)} feature(s) decoded with R2 below {min_r2} ({', '.join(weak[:3])}); their concept "
                     f"maps show where the decoder reads noise as much as the feature (see docs/saliency.md)")
        embedder = load_embedder(encoder, layer=rec.get("layer", "final"), pool=rec.get("pool", "mean"), device=dev,
                                 trust=trust_checkpoint, modalities=mods, weights=weights)
        concept = ConceptMaps(embedder, readout, concept_method, device=dev)
        concept_params = {"decoder_r2": r2, "min_r2": min_r2, "features": cols, "concept_method": concept_method,
                          "lens": str(dec.attrs.get("method", "calibrated")),
                          "decoded_feature": ("mean over the re-splits' predictions (each re-split's own share "
                                              "and decoder)" if dec.resplit is not None else "the decoder's prediction"),
                          "decoder_r2_is": "mean held-out R2 over the re-splits, clipped at 0" if dec.resplit is not None
                          else "held-out R2 on the eval split",
                          "alignment": readout.alignment, "embedding_layer": rec.get("layer", "final"),
                          "embedding_pool": rec.get("pool", "mean")}
    recorded = (scored.preprocessing if scored is not None else None)
    if recorded is None and concept is not None:
        recorded = concept.embedder.info.preprocessing
    cfg = preprocessing_config(mods, mask_spec, spacing, crop, norm, recorded, orient=orient, layout=layout,
                               norm_region=norm_region, warn=log.warn)
    part = man.shard(part_id, num_parts) if num_parts > 1 else man
    n = len(part)
    if n == 0 and num_parts == 1:
        raise RadlensError(f"{manifest}: no case to map")
    if maps and not force:
        taken = [c for c in part.case_ids if os.path.exists(os.path.join(maps, case_folder(str(c))))]
        if taken:
            raise ParameterError(f"{maps}: already holds maps of case(s) {', '.join(map(str, taken[:3]))}; "
                                 f"use {{force}} to replace them", "force")
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
