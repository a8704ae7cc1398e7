"""`radlens embed`: encoder embeddings for every case of a manifest.

Library: encoders/embedding.py (the batched loop, cache, worker deaths), encoders/infer.py (every kind of encoder).
"""

from __future__ import annotations

import os

import numpy as np
import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (arch_option, crop_option, device_option, force_option, keep_going_option,
                                          layout_option, mask_option, modalities_option, norm_option,
                                          norm_region_option, num_parts_option, orient_option, output_option,
                                          parse_triple, part_id_option, parts_option, seed_option, spacing_option,
                                          strict_geometry_option, trust_checkpoint_option, weights_option)
from radlens_cli.devices import resolve_device
from radlens_cli.encoders.embedding import BatchedEmbedding
from radlens_cli.encoders.infer import load_embedder
from radlens_cli.errors import UsageError
from radlens_cli.io.manifest import parse_mask_spec, read_manifest
from radlens_cli.io.runs import CohortRun
from radlens_cli.io.tables import CaseTable, write_table
from radlens_cli.names import parse_list

def embed(manifest: str, modalities: str, mask: str, encoder: str, output: str, arch: str | None = None,
          layer: str = "final", pool: str = "mean", spacing: str | None = None, crop: str | None = None,
          norm: str | None = None, batch_size: int = 2, device: str = "auto", jobs: int = 1,
          cache_dir: str | None = None, part_id: int | None = None, num_parts: int | None = None,
          seed: int = 0, force: bool = False, failures_path: str | None = None,
          keep_going: bool = False, parts: str | None = None, strict_geometry: bool = False,
          trust_checkpoint: bool = False, orient: str | None = None, layout: str | None = None,
          norm_region: str | None = None, weights: str | None = None) -> dict:
    """Embed every case (of this part) and write a case table with columns emb_0000...

    A case that cannot be preprocessed is reported in one line and left out. When cases
    failed: without keep_going raises RadlensError and writes nothing (the cache keeps
    finished batches); with it writes the others, records the failures, warns.
    """
    import torch

    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.preprocess import CaseDataset, preprocessing_config

    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1 (got {batch_size})")
    run = CohortRun.start(output, parts, part_id, num_parts, failures_path, keep_going, force, bool(cache_dir))
    mods = parse_list(modalities, "modalities")
    mask_spec = parse_mask_spec(mask)
    man = read_manifest(manifest)
    man.require_images(mods, mask_spec)
    dev = resolve_device(device)
    torch.manual_seed(seed)

    embedder = load_embedder(encoder, arch=arch, layer=layer, pool=pool, device=dev, trust=trust_checkpoint,
                             modalities=mods, weights=weights)
    info = embedder.info
    if isinstance(spacing, str):
        spacing = parse_triple(spacing, "--spacing")
    if isinstance(crop, str):
        crop = parse_triple(crop, "--crop", int)
    cfg = preprocessing_config(mods, mask_spec, spacing, crop, norm, info.preprocessing, orient=orient,
                               layout=layout, norm_region=norm_region, warn=log.warn)
    embedder.check_config(cfg)  # also picks a reused module's call: layer NAME#k, or NAME for one call
    fingerprint, layer = embedder.fingerprint, embedder.layer

    part = run.cases(man, manifest, "embed")
    n = len(part)
    if n == 0:
        log.info(f"nothing to do: part {run.part_id} of {run.num_parts} holds no case; writing an empty part")
    dataset = CaseDataset(part, cfg, cache_dir=cache_dir, failures_as_records=True, strict_geometry=strict_geometry)
    batched = BatchedEmbedding(embedder, dataset, part.case_ids, cfg, batch_size, jobs, cache_dir)
    log.info(f"embedding {n} case(s) of {manifest} with {info.arch} ({info.source}) on {dev}, "
             f"layer {layer}, crop {'x'.join(map(str, cfg.crop))} at {','.join(map(str, cfg.spacing))} mm")
    batched.run(encoder)
    results, failures, case_inputs = batched.results, batched.failures, batched.case_inputs
    run.finish(failures, n, len(results))
    rows = sorted(results)
    values = np.stack([results[i] for i in rows], 0) if rows else np.zeros((0, 0))
    d = values.shape[1]
    columns = [f"emb_{j:04d}" for j in range(d)]
    params = {"modalities": mods, "mask": str(mask_spec), "encoder": encoder, "encoder_source": info.source,
              "arch": info.arch, "in_chans": info.in_chans, "embed_dim": d, "layer": layer, "pool": pool,
              "encoder_fingerprint": fingerprint, "preprocessing": cfg.to_dict(), "batch_size": batch_size,
              "device": dev.type, "precision": "bf16-autocast" if embedder.use_amp else "fp32",
              "part_id": run.part_id, "num_parts": run.num_parts, "seed": seed,
              "split_derived": bool(man.split_derived), "cache_dir": cache_dir, "keep_going": keep_going,
              "case_inputs": dict(sorted({**dataset.case_inputs(), **case_inputs}.items())),
              "trust_checkpoint": trust_checkpoint, "checkpoint_fully_unpickled": info.trusted}
    if embedder.layer_calls and embedder.layer_calls > 1:
        params["layer_calls"] = embedder.layer_calls  # the module runs that often per forward pass
    if info.absent_optional:
        params["encoder_absent_weights"] = info.absent_optional
    for key in ("weights", "weights_prefix", "onnx_input", "onnx_input_shape", "onnx_output", "onnx_providers"):
        if getattr(info, key) is not None:
            params[key] = getattr(info, key)
    inputs = {"manifest": manifest}
    if os.path.isfile(encoder):
        inputs["encoder"] = encoder
    if weights:
        inputs["weights"] = weights
    attrs = run.record(provenance.build("embed", inputs=inputs, params=params), failures)
    sel = np.asarray(rows, dtype=np.int64)
    table = CaseTable(case_id=np.asarray(part.case_ids)[sel], values=values, columns=columns,
                      split=None if part.split is None else np.asarray(part.split)[sel],
                      column_meta={"layer": np.array([layer] * d, dtype=object)})
    write_table(table, output, force=force, attrs=attrs)
    log.info(f"wrote {output}: {len(rows)} case(s) x {d} embedding dimension(s)")
    run.done(failures, len(rows))
    return {"n_cases": len(rows), "dim": d}


@command("embed")
def embed_cli(
    manifest: str = typer.Argument(..., help="Cohort manifest CSV (case_id, image and mask path columns)."),
    modalities: str = modalities_option(),
    mask: str = mask_option(),
    encoder: str = typer.Option(..., "--encoder",
                                help="Checkpoint (radlens, ProFound/FCMAE, state dict, Lightning, safetensors; "
                                     "read weights-only), ONNX model (.onnx; needs radlens[onnx]), TorchScript "
                                     "file, or package.module:factory. TorchScript files and factories run code "
                                     "by design: use only those you would run as scripts."),
    weights: str = weights_option(),
    output: str = output_option("Embedding case table (.h5, or .csv; `-` for stdout)."),
    arch: str = arch_option(),
    layer: str = typer.Option("final", "--layer",
                              help="final: the model's own output (built-in: the pooled, normalised embedding); "
                                   "stage1..stage4: the built-in encoder's stage; otherwise a sub-module's "
                                   "dotted name (torch, e.g. encoder.layers.2) or a tensor name (ONNX). A module "
                                   "that runs k > 1 times per forward pass needs its call: NAME#k (1-based) or "
                                   "NAME#last. A (B, C, z, y, x) output is pooled over space. `radlens layers` "
                                   "lists them."),
    pool: str = typer.Option("mean", "--pool", help="Pooling over space of a layer's output: mean or max."),
    spacing: str = spacing_option(),
    crop: str = crop_option(),
    norm: str = norm_option(),
    norm_region: str = norm_region_option(),
    orient: str = orient_option(),
    layout: str = layout_option(),
    batch_size: int = typer.Option(2, "--batch-size", min=1, help="Volumes per forward pass."),
    device: str = device_option(),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                             help="DataLoader worker processes that read and resample cases (1: in the "
                                  "main process; use several on a GPU)."),
    cache_dir: str = typer.Option(None, "--cache-dir",
                                  help="Keep preprocessed volumes (float16) and finished batches here; a rerun "
                                       "after an interruption resumes. Keyed by input sha256 and settings."),
    parts: str = parts_option(),
    part_id: int = part_id_option(),
    num_parts: int = num_parts_option(),
    failures: str = typer.Option(None, "--failures",
                                 help="Also write the failed cases as CSV: case_id, modality (the input at "
                                      "fault, or `mask <spec>`), path, reason, status."),
    keep_going: bool = keep_going_option(),
    trust_checkpoint: bool = trust_checkpoint_option(),
    seed: int = seed_option(),
    force: bool = force_option(),
    strict_geometry: bool = strict_geometry_option(),
):
    """Encoder embeddings for every case of a manifest.

    Reads the manifest's images (files or DICOM series folders, any grids), resamples
    every modality in physical space onto one grid around the mask (--spacing, --crop
    box centred on the mask's bounding box, padded where an image ends), normalises each
    channel, and runs the encoder (batched; bf16 autocast on CUDA). Preprocessing
    defaults come from the checkpoint when it records them. Writes a case table
    (schema case-table/1) with columns emb_0000..., the manifest's split, and provenance
    (encoder sha256, architecture, preprocessing). Deterministic on CPU.

    A failing case -- missing or unreadable image, empty mask, absent label, mask
    outside the image -- is reported in one line and the batch goes on (also in -j
    workers); failed cases are left out of the table (never written as empty values)
    and listed in --failures. When some failed: exit 1 and no output (--cache-dir
    keeps the finished batches, never a failed case); with --keep-going the others
    are written, the failures recorded in the output, a warning counts them, exit 0.
    --parts slurm (or --part-id/--num-parts) embeds one part; `radlens merge` joins.

    Any encoder: ONNX models, TorchScript, package.module:factory (+ --weights), and any
    layer of them (--layer; see `radlens layers`). Set the conventions the model was
    trained with: --orient, --layout, --spacing and --crop (both x,y,z), --norm and
    --norm-region; they are recorded in the output.

    Checkpoints are read weights-only: a file that would run code when unpickled is
    refused (exit 1) unless --trust-checkpoint is given.

    Examples:

    \b
      radlens init-encoder --arch convnextv2_atto --in-chans 3 -o random.pt
      radlens embed cohort.csv --modalities t2,dwi,adc --mask gland --encoder random.pt -o emb.h5
      radlens embed cohort.csv --modalities t2,dwi,adc --mask zones:1+2 --encoder profound.pt \\
          --arch convnextv2_tiny --device cuda --batch-size 8 -j 8 --cache-dir cache -o emb_pre.h5
      radlens embed cohort.csv --modalities t2,dwi,adc --mask gland --encoder ft.pt --layer stage3 -o - | radlens info -
      radlens embed cohort.csv --modalities t2 --mask gland --encoder segresnet.onnx \\
          --layer /encoder/down_layers.3/Add_output_0 --orient RAS --layout xyz \\
          --spacing 0.5,0.5,1 --crop 128,128,64 --norm-region volume -o emb_onnx.h5
      radlens embed cohort.csv --modalities t2 --mask gland --encoder mynets:segresnet \\
          --weights model.ckpt --layer down_layers.3 --orient RAS --layout xyz -o emb_monai.h5
    """
    embed(manifest, modalities, mask, encoder, output, arch=arch, layer=layer, pool=pool, spacing=spacing,
          crop=crop, norm=norm, batch_size=batch_size, device=device, jobs=jobs, cache_dir=cache_dir,
          part_id=part_id, num_parts=num_parts, seed=seed, force=force, failures_path=failures,
          keep_going=keep_going, parts=parts, strict_geometry=strict_geometry, trust_checkpoint=trust_checkpoint,
          orient=orient, layout=layout, norm_region=norm_region, weights=weights)
