"""`radlens embed`: encoder embeddings for every case of a manifest."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import numpy as np
import typer

from radlens_cli import log
from radlens_cli.commands._util import command, device_option, force_option, output_option, seed_option
from radlens_cli.errors import PartialSuccess, RadlensError, UsageError

DEFAULT_SPACING = (0.5, 0.5, 1.0)
DEFAULT_CROP = (64, 224, 224)


def resolve_device(device: str):
    import torch

    d = (device or "auto").strip().lower()
    if d == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available on this machine")
        return torch.device(d)
    if d == "cpu":
        return torch.device("cpu")
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N (got {device!r})")


def model_fingerprint(model) -> str:
    """sha256 over the model's parameters and buffers (names, shapes, bytes)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def preprocessing_config(modalities, mask, spacing, crop, norm, recorded: dict | None):
    """The run's PreprocessConfig: command line first, then the checkpoint's record, then defaults."""
    from radlens_cli.encoders.preprocess import PreprocessConfig, parse_triple

    rec = recorded or {}
    sp = parse_triple(spacing, "--spacing") if spacing else tuple(rec.get("spacing", DEFAULT_SPACING))
    cr = parse_triple(crop, "--crop", int) if crop else tuple(rec.get("crop", DEFAULT_CROP))
    nm = norm or rec.get("norm", "zscore")
    if rec.get("modalities") and list(rec["modalities"]) != list(modalities):
        log.warn(f"the encoder was trained on modalities {','.join(rec['modalities'])} "
                 f"(channel order matters); --modalities gives {','.join(modalities)}")
    return PreprocessConfig(modalities=list(modalities), mask=mask, spacing=sp, crop=cr, norm=nm)


def embed(manifest: str, modalities: str, mask: str, encoder: str, output: str, arch: str | None = None,
          layer: str = "final", pool: str = "mean", spacing: str | None = None, crop: str | None = None,
          norm: str | None = None, batch_size: int = 2, device: str = "auto", jobs: int = 1,
          cache_dir: str | None = None, part_id: int | None = None, num_parts: int | None = None,
          seed: int = 0, force: bool = False, failures_path: str | None = None,
          keep_going: bool = False) -> dict:
    """Embed every case (of this part) and write a case table with columns emb_0000...

    A case that cannot be preprocessed is reported in one line and left out; the others are
    written. Raises RadlensError (exit 1) after writing when cases failed, PartialSuccess
    (exit 3) instead with keep_going; RadlensError without writing when none succeeded.
    """
    import torch
    from torch.utils.data import DataLoader

    from radlens_cli import provenance
    from radlens_cli.encoders.checkpoints import load_encoder
    from radlens_cli.encoders.convnextv2 import LAYERS, POOLS, extract_embedding
    from radlens_cli.commands.extract_radiomics import write_failures
    from radlens_cli.encoders.preprocess import (CaseDataset, collate_cases, save_npz_atomic, unwrap_worker_error,
                                                 worker_init)
    from radlens_cli.io.files import check_output, check_side_output
    from radlens_cli.io.manifest import parse_list, parse_mask_spec, parts_from_env, read_manifest
    from radlens_cli.io.tables import CaseTable, write_table

    if layer not in LAYERS:
        raise UsageError(f"--layer must be one of {', '.join(LAYERS)} (got {layer!r})")
    if pool not in POOLS:
        raise UsageError(f"--pool must be one of {', '.join(POOLS)} (got {pool!r})")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1 (got {batch_size})")
    check_output(output, force)
    check_side_output(failures_path, output, "--failures", force)
    part_id, num_parts = parts_from_env(part_id, num_parts)
    mods = parse_list(modalities, "--modalities")
    mask_spec = parse_mask_spec(mask)
    man = read_manifest(manifest)
    man.require_columns(mods, "modality")
    man.require_columns([mask_spec.column], "mask")
    dev = resolve_device(device)
    torch.manual_seed(seed)

    model, enc = load_encoder(encoder, arch=arch, map_location="cpu")
    if enc["in_chans"] is not None and int(enc["in_chans"]) != len(mods):
        raise RadlensError(f"{encoder}: the encoder takes {enc['in_chans']} input channel(s) but "
                           f"--modalities gives {len(mods)} ({','.join(mods)})")
    if layer != "final" and not hasattr(model, "forward_features"):
        raise UsageError(f"--layer {layer}: encoder {encoder} ({enc['source']}) has no forward_features; "
                         f"use --layer final")
    cfg = preprocessing_config(mods, mask_spec, spacing, crop, norm, enc.get("preprocessing"))
    if hasattr(model, "dims") and hasattr(model, "stages") and min(cfg.crop) < 16:
        raise UsageError(f"--crop {','.join(map(str, cfg.crop))}: the ConvNeXt-V2 downsamples 16-fold; "
                         f"every side of the box needs at least 16 voxels")
    model = model.to(dev).eval()
    fingerprint = model_fingerprint(model)

    part = man.shard(part_id, num_parts) if num_parts > 1 else man
    n = len(part)
    if n == 0:
        raise RadlensError(f"{manifest}: part {part_id} of {num_parts} holds no cases")
    dataset = CaseDataset(part, cfg, cache_dir=cache_dir, failures_as_records=True)
    # Fixed batches over the case order, so a rerun that reads some batches from the cache
    # computes the others with exactly the same batch composition (bitwise-equal results).
    # A batch with a failed case is never cached: a rerun retries that case.
    batches = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
    emb_dir = None
    if cache_dir:
        run_key = hashlib.sha256(f"{fingerprint}|{layer}|{pool}|{cfg.key()}|{dev.type}".encode()).hexdigest()[:24]
        emb_dir = os.path.join(cache_dir, "embeddings", run_key)
        os.makedirs(emb_dir, exist_ok=True)

    if cache_dir:
        # Cache keys hash every input file; hash them once, in threads (hashlib releases the
        # GIL), before DataLoader workers fork and inherit the hashes.
        from concurrent.futures import ThreadPoolExecutor

        paths = sorted({p for i in range(n) for p in list(dataset.images[i]) + [dataset.masks[i]]
                        if p and os.path.exists(p)})
        with ThreadPoolExecutor(max(1, min(jobs, 8))) as hasher:   # not `pool`: that is --pool
            list(hasher.map(provenance.sha256_file, paths))

    def batch_file(idx):
        h = hashlib.sha256("|".join(dataset.cache_key(i) for i in idx).encode()).hexdigest()[:32]
        return os.path.join(emb_dir, f"batch-{h}.npz")

    results: dict[int, np.ndarray] = {}
    todo = []
    for b in batches:
        f = batch_file(b) if emb_dir else None
        if f and os.path.exists(f):
            try:
                with np.load(f) as z:
                    results.update({i: z["emb"][k] for k, i in enumerate(b)})
                continue
            except Exception:  # noqa: BLE001 - damaged entry: recompute
                pass
        todo.append(b)
    if len(todo) < len(batches):
        log.info(f"{len(batches) - len(todo)} of {len(batches)} batch(es) read from {cache_dir}")

    use_amp = dev.type == "cuda"
    if use_amp:
        torch.backends.cudnn.benchmark = True  # fixed input shape: pick the fastest conv kernels once
    loader = DataLoader(dataset, batch_sampler=todo, num_workers=0 if jobs <= 1 else jobs,
                        collate_fn=collate_cases, pin_memory=use_amp,
                        worker_init_fn=worker_init if jobs > 1 else None)
    log.info(f"embedding {n} case(s) of {manifest} with {enc['arch']} ({enc['source']}) on {dev}, "
             f"layer {layer}, crop {'x'.join(map(str, cfg.crop))} at {','.join(map(str, cfg.spacing))} mm")
    failures: list[dict] = []
    bar = log.progress(todo, total=len(todo), desc="embed", unit="batch")

    def report(rec: dict) -> None:
        failures.append(rec)
        where = f"{rec['path']}: " if rec["path"] else ""
        line = f"radlens embed: failed: case {rec['case_id']}, {rec['modality']}: {where}{rec['reason']}"
        if bar.disable:
            print(line, file=sys.stderr, flush=True)
        else:
            bar.write(line, file=sys.stderr)

    it = iter(loader)
    with torch.inference_mode():
        for b in bar:
            try:
                item = next(it)
            except StopIteration:  # pragma: no cover
                break
            except RadlensError as e:
                raise RadlensError(unwrap_worker_error(e)) from None
            except Exception as e:  # noqa: BLE001 - worker errors arrive wrapped
                raise RadlensError(unwrap_worker_error(e)) from None
            for rec in item["failures"]:
                report(rec)
            ok = item["index"]
            if not ok:
                continue
            x = item["volume"].to(dev, non_blocking=True)
            try:
                if use_amp:
                    with torch.autocast("cuda", dtype=torch.bfloat16):
                        e = extract_embedding(model, x, layer, pool)
                else:
                    e = extract_embedding(model, x, layer, pool)
            except (RuntimeError, ValueError, TypeError) as err:
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise RadlensError(f"{encoder}: forward pass failed on input {tuple(x.shape)} "
                                   f"(case {part.case_ids[ok[0]]}...): {first}") from None
            e = e.float().cpu().numpy().astype(np.float64)
            if e.ndim != 2 or e.shape[0] != len(ok):
                raise RadlensError(f"{encoder}: expected a (batch, d) embedding, got shape {tuple(e.shape)}")
            finite = np.isfinite(e).all(1)
            for k in np.flatnonzero(~finite):
                report({"case_id": str(part.case_ids[ok[k]]), "modality": "embedding", "path": encoder,
                        "reason": "non-finite embedding", "status": "failed"})
            if emb_dir and len(ok) == len(b) and finite.all():
                save_npz_atomic(batch_file(b), emb=e)
            results.update({i: e[k] for k, i in enumerate(ok) if finite[k]})
    bar.close()
    if failures_path:
        write_failures(failures_path, failures, force)
    if not results:
        raise RadlensError(f"no case succeeded ({n} tried); nothing written"
                           + (f"; failures listed in {failures_path}" if failures_path else ""))
    rows = sorted(results)
    values = np.stack([results[i] for i in rows], 0)
    d = values.shape[1]
    columns = [f"emb_{j:04d}" for j in range(d)]
    params = {"modalities": mods, "mask": str(mask_spec), "encoder": encoder, "encoder_source": enc["source"],
              "arch": enc["arch"], "in_chans": enc["in_chans"], "embed_dim": d, "layer": layer, "pool": pool,
              "encoder_fingerprint": fingerprint, "preprocessing": cfg.to_dict(), "batch_size": batch_size,
              "device": dev.type, "precision": "bf16-autocast" if use_amp else "fp32",
              "part_id": part_id, "num_parts": num_parts, "seed": seed,
              "split_derived": bool(man.split_derived), "cache_dir": cache_dir, "keep_going": keep_going}
    if enc.get("absent_optional"):
        params["encoder_absent_weights"] = enc["absent_optional"]
    inputs = {"manifest": manifest}
    if os.path.isfile(encoder):
        inputs["encoder"] = encoder
    attrs = provenance.build("embed", inputs=inputs, params=params)
    attrs["failures"] = json.dumps(failures)
    sel = np.asarray(rows)
    table = CaseTable(case_id=np.asarray(part.case_ids)[sel], values=values, columns=columns,
                      split=None if part.split is None else np.asarray(part.split)[sel],
                      column_meta={"layer": np.array([layer] * d, dtype=object)})
    write_table(table, output, force=force, attrs=attrs)
    log.info(f"wrote {output}: {len(rows)} case(s) x {d} embedding dimension(s)")
    if failures:
        n_failed = len({f["case_id"] for f in failures})
        msg = (f"{n_failed} case(s) failed, {len(rows)} written to {output}"
               + (f"; failures listed in {failures_path}" if failures_path else "; see the lines above"))
        if keep_going:
            raise PartialSuccess(msg)
        raise RadlensError(msg)
    return {"n_cases": len(rows), "dim": d}


@command("embed")
def embed_cli(
    manifest: str = typer.Argument(..., help="Cohort manifest CSV (case_id, image and mask path columns)."),
    modalities: str = typer.Option(..., "--modalities",
                                   help="Image columns stacked as channels, in this order (e.g. t2,dwi,adc)."),
    mask: str = typer.Option(..., "--mask",
                             help="Mask column the box is centred on; `zones:1` one label, `zones:1+2` a union."),
    encoder: str = typer.Option(..., "--encoder",
                                help="Checkpoint (radlens, ProFound/FCMAE, state dict), TorchScript file, "
                                     "or package.module:factory."),
    output: str = output_option("Embedding case table (.h5, or .csv; `-` for stdout)."),
    arch: str = typer.Option(None, "--arch",
                             help="Architecture of a plain or FCMAE checkpoint (default: inferred from its "
                                  "weights; radlens checkpoints record it). A mismatch is an error."),
    layer: str = typer.Option("final", "--layer",
                              help="final: the pooled, normalised embedding; stage1..stage4: that stage's "
                                   "output pooled over space."),
    pool: str = typer.Option("mean", "--pool", help="Pooling for --layer stageN: mean or max."),
    spacing: str = typer.Option(None, "--spacing",
                                help="Voxel spacing x,y,z in mm [default: the checkpoint's, else 0.5,0.5,1.0]."),
    crop: str = typer.Option(None, "--crop",
                             help="Box D,H,W in voxels around the mask [default: the checkpoint's, "
                                  "else 64,224,224]."),
    norm: str = typer.Option(None, "--norm",
                             help="Per-channel normalisation zscore or percentile [default: the "
                                  "checkpoint's, else zscore]."),
    batch_size: int = typer.Option(2, "--batch-size", min=1, help="Volumes per forward pass."),
    device: str = device_option(),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1,
                             help="DataLoader worker processes that read and resample cases (1: in the "
                                  "main process; use several on a GPU)."),
    cache_dir: str = typer.Option(None, "--cache-dir",
                                  help="Keep preprocessed volumes (float16) and finished batches here; a rerun "
                                       "after an interruption resumes. Keyed by input sha256 and settings."),
    part_id: int = typer.Option(None, "--part-id", min=0,
                                help="This part's index [default: $SLURM_ARRAY_TASK_ID, else 0]."),
    num_parts: int = typer.Option(None, "--num-parts", min=1,
                                  help="Number of parts [default: $SLURM_ARRAY_TASK_COUNT, else 1]; join "
                                       "parts with `radlens merge`."),
    failures: str = typer.Option(None, "--failures",
                                 help="Also write the failed cases as CSV: case_id, modality (the input at "
                                      "fault, or `mask <spec>`), path, reason, status."),
    keep_going: bool = typer.Option(False, "--keep-going",
                                    help="Exit 3 instead of 1 when some cases failed (the embeddings of the "
                                         "others are written either way)."),
    seed: int = seed_option(),
    force: bool = force_option(),
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
    and listed in the output's `failures` attribute and in --failures. Exit 1 when
    some failed (3 with --keep-going), 0 when none did; when none succeeded, nothing
    is written. --cache-dir never keeps a failed case.

    Examples:

    \b
      radlens init-encoder --arch convnextv2_atto --in-chans 3 -o random.pt
      radlens embed cohort.csv --modalities t2,dwi,adc --mask gland --encoder random.pt -o emb.h5
      radlens embed cohort.csv --modalities t2,dwi,adc --mask zones:1+2 --encoder profound.pt \\
          --arch convnextv2_tiny --device cuda --batch-size 8 -j 8 --cache-dir cache -o emb_pre.h5
      radlens embed cohort.csv --modalities t2,dwi,adc --mask gland --encoder ft.pt --layer stage3 -o - | radlens info -
    """
    embed(manifest, modalities, mask, encoder, output, arch=arch, layer=layer, pool=pool, spacing=spacing,
          crop=crop, norm=norm, batch_size=batch_size, device=device, jobs=jobs, cache_dir=cache_dir,
          part_id=part_id, num_parts=num_parts, seed=seed, force=force, failures_path=failures,
          keep_going=keep_going)
