"""`radlens embed`: encoder embeddings for every case of a manifest.

Library: encoders.embed_cohort (encoders/embedding.py: the batched loop, cache, worker deaths), encoders/infer.py (every kind of encoder).
"""

from __future__ import annotations

import os

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import (arch_option, crop_option, device_option, force_option, keep_going_option,
                                          layout_option, mask_option, modalities_option, norm_option,
                                          norm_region_option, num_parts_option, orient_option, output_option,
                                          parse_triple, part_id_option, parts_option, seed_option, spacing_option,
                                          strict_geometry_option, trust_checkpoint_option, weights_option)
from radlens_cli.io.runs import CohortRun
from radlens_cli.io.tables import write_table


def embed(manifest: str, modalities: str, mask: str, encoder: str, output: str, arch: str | None = None,
          layer: str = "final", pool: str = "mean", spacing: str | None = None, crop: str | None = None,
          norm: str | None = None, batch_size: int = 2, device: str = "auto", jobs: int = 1,
          cache_dir: str | None = None, part_id: int | None = None, num_parts: int | None = None,
          seed: int = 0, force: bool = False, failures_path: str | None = None,
          keep_going: bool = False, parts: str | None = None, strict_geometry: bool = False,
          trust_checkpoint: bool = False, orient: str | None = None, layout: str | None = None,
          norm_region: str | None = None, weights: str | None = None) -> dict:
    """Embed every case (of this part; encoders.embed_cohort) and write a case table with
    columns emb_0000...

    When cases failed: without keep_going raises RadlensError and writes nothing (the
    cache keeps finished batches); with it writes the others, records the failures, warns.
    """
    # heavy: loads torch (kept out of radlens --help)
    from radlens_cli.encoders.embedding import embed_cohort

    run = CohortRun.start(output, parts, part_id, num_parts, failures_path, keep_going, force, bool(cache_dir))
    res = embed_cohort(manifest, modalities, mask, encoder, arch=arch, layer=layer, pool=pool,
                       spacing=parse_triple(spacing, "--spacing") if isinstance(spacing, str) else spacing,
                       crop=parse_triple(crop, "--crop", int) if isinstance(crop, str) else crop,
                       norm=norm, norm_region=norm_region, orient=orient, layout=layout, weights=weights,
                       batch_size=batch_size, device=device, jobs=jobs, cache_dir=cache_dir,
                       part=(run.part_id, run.num_parts), seed=seed, strict_geometry=strict_geometry,
                       trust_checkpoint=trust_checkpoint, keep_going=keep_going)
    run.finish(res.failures, res.n_tried, res.table.n_cases)
    inputs = {"manifest": manifest}
    if os.path.isfile(encoder):
        inputs["encoder"] = encoder
    if weights:
        inputs["weights"] = weights
    attrs = run.record(provenance.build("embed", inputs=inputs, params=res.params), res.failures)
    write_table(res.table, output, force=force, attrs=attrs)
    log.info(f"wrote {output}: {res.table.n_cases} case(s) x {len(res.table.columns)} embedding dimension(s)")
    run.done(res.failures, res.table.n_cases)
    return {"n_cases": res.table.n_cases, "dim": len(res.table.columns)}


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
