"""Embedding a dataset of cases in fixed batches: the batch cache, the loader, failed cases.

`embed_cohort` (what `radlens embed` runs) reads the manifest and the encoder, builds a
CaseDataset and an Embedder, and hands them to `BatchedEmbedding`; what comes back is one embedding per case that
succeeded, the failure records and the inputs read (DICOM objects, geometry warnings).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from radlens_cli import log, provenance
from radlens_cli.devices import resolve_device
from radlens_cli.encoders.infer import load_embedder
from radlens_cli.encoders.preprocess import CaseDataset, preprocessing_config
from radlens_cli.errors import ParameterError, RadlensError
from radlens_cli.io.manifest import parse_mask_spec, read_manifest
from radlens_cli.io.runs import cohort_part
from radlens_cli.io.tables import CaseTable
from radlens_cli.names import parse_list
from radlens_cli.workers import MarkedDataset, resilient_batches


class BatchedEmbedding:
    """The embeddings of `dataset` (one per case index) by `embedder`, batch by batch.

    Fixed batches over the case order, so a rerun that reads some batches from the cache
    computes the others with exactly the same batch composition (bitwise-equal results).
    A batch with a failed case is never cached: a rerun retries that case.
    """

    def __init__(self, embedder, dataset, case_ids, cfg, batch_size: int, jobs: int = 1,
                 cache_dir: str | None = None):
        self.embedder, self.dataset, self.case_ids = embedder, dataset, case_ids
        self.jobs, self.cache_dir = jobs, cache_dir
        n = self.n = len(dataset)
        self.batches = [list(range(s, min(n, s + batch_size))) for s in range(0, n, batch_size)]
        self.emb_dir = None
        if cache_dir:
            run_key = hashlib.sha256(f"{embedder.fingerprint}|{embedder.layer}|{embedder.pool}|{cfg.key()}|"
                                     f"{embedder.device.type}".encode()).hexdigest()[:24]
            self.emb_dir = os.path.join(cache_dir, "embeddings", run_key)
            os.makedirs(self.emb_dir, exist_ok=True)

        if cache_dir:
            # Cache keys hash every input file; hash them once, in threads (hashlib releases the
            # GIL), before DataLoader workers fork and inherit the hashes.
            from concurrent.futures import ThreadPoolExecutor

            paths = sorted({p for i in range(n) for p in list(dataset.images[i]) + [dataset.masks[i]]
                            if p and os.path.exists(p)})
            with ThreadPoolExecutor(max(1, min(jobs, 8))) as hasher:  # not `pool`: that is --pool
                list(hasher.map(provenance.sha256_file, paths))

        self.results: dict[int, np.ndarray] = {}
        self.todo = []
        for b in self.batches:
            f = self._batch_file(b) if self.emb_dir else None
            if f and os.path.exists(f):
                try:
                    with np.load(f) as z:
                        self.results.update({i: z["emb"][k] for k, i in enumerate(b)})
                    continue
                except Exception:  # noqa: BLE001 - damaged entry: recompute
                    pass
            self.todo.append(b)
        if len(self.todo) < len(self.batches):
            log.info(f"{len(self.batches) - len(self.todo)} of {len(self.batches)} batch(es) read from {cache_dir}")
        self.failures: list[dict] = []
        self.case_inputs: dict = {}  # case -> DICOM objects read, geometry warning (cases not read from the cache)

    def _batch_file(self, idx):
        h = hashlib.sha256("|".join(self.dataset.cache_key(i) for i in idx).encode()).hexdigest()[:32]
        return os.path.join(self.emb_dir, f"batch-{h}.npz")

    def run(self, encoder: str) -> None:
        """Embed the batches not read from the cache; `encoder` names the model in failure records."""
        import torch
        from torch.utils.data import DataLoader

        # heavy: loads torch
        from radlens_cli.encoders.preprocess import collate_cases, save_npz_atomic, unwrap_worker_error, worker_init

        embedder, dataset, jobs, case_ids = self.embedder, self.dataset, self.jobs, self.case_ids
        emb_dir, failures, case_inputs, results = self.emb_dir, self.failures, self.case_inputs, self.results
        use_amp = embedder.use_amp
        if use_amp:
            torch.backends.cudnn.benchmark = True  # fixed input shape: pick the fastest conv kernels once
        # -j workers: a worker that dies (OOM kill, segfault) fails only the case it was reading,
        # after one retry in a fresh loader (radlens_cli/workers.py); the run goes on.
        marker_dir = tempfile.mkdtemp(prefix="radlens-loader-")
        atexit.register(shutil.rmtree, marker_dir, True)
        source = MarkedDataset(dataset, marker_dir, dataset.case_ids) if jobs > 1 else dataset

        def make_loader(batch_lists):
            return DataLoader(source, batch_sampler=batch_lists, num_workers=0 if jobs <= 1 else jobs,
                              collate_fn=collate_cases, pin_memory=use_amp,
                              worker_init_fn=worker_init if jobs > 1 else None)
        bar = log.progress(total=len(self.todo), desc="embed", unit="batch")

        def report(rec: dict) -> None:
            failures.append(rec)
            where = f"{rec['path']}: " if rec["path"] else ""
            line = f"radlens embed: failed: case {rec['case_id']}, {rec['modality']}: {where}{rec['reason']}"
            if bar.disable:
                print(line, file=sys.stderr, flush=True)
            else:
                bar.write(line, file=sys.stderr)

        def on_death(i, how, retry):
            if retry:
                log.warn(f"a loader worker {how}, reading case {dataset.case_ids[i]}; retrying it in a fresh worker")
            else:
                report({"case_id": dataset.case_ids[i], "modality": "preprocessing", "path": "",
                        "reason": f"loader worker {how} (tried twice)", "status": "failed"})

        stream = resilient_batches(make_loader, self.todo, marker_dir, retries=1, on_death=on_death)
        with torch.inference_mode():
            while True:
                try:
                    b, item = next(stream)
                except StopIteration:
                    break
                except Exception as e:  # noqa: BLE001 - worker errors arrive wrapped
                    # a ParameterError keeps its parameters (CaseDataset notes them), others their one line
                    raise (ParameterError.from_traceback_text(str(e)) or RadlensError(unwrap_worker_error(e))) from None
                case_inputs.update(item["inputs"])
                bar.update(1)
                for rec in item["failures"]:
                    report(rec)
                ok = item["index"]
                if not ok:
                    continue
                e = embedder(item["volume"], first_case=str(case_ids[ok[0]]))
                finite = np.isfinite(e).all(1)
                for k in np.flatnonzero(~finite):
                    report({"case_id": str(case_ids[ok[k]]), "modality": "embedding", "path": encoder,
                            "reason": "non-finite embedding", "status": "failed"})
                if emb_dir and len(ok) == len(b) and finite.all():
                    save_npz_atomic(self._batch_file(b), emb=e)
                results.update({i: e[k] for k, i in enumerate(ok) if finite[k]})
        bar.close()


@dataclass
class CohortEmbedding:
    """What `embed_cohort` returns: the case table (columns emb_0000..., the manifest's
    split; empty when no case succeeded), the failed cases, and the run's record."""

    table: CaseTable
    failures: list[dict]
    params: dict          # what the run did: encoder, layer, preprocessing, device... (provenance's params)
    n_tried: int = 0      # cases tried (this part's)


def embed_cohort(manifest: str, modalities: list[str] | str, mask: str, encoder: str, *, arch: str | None = None,
                 layer: str = "final", pool: str = "mean", spacing=None, crop=None, norm: str | None = None,
                 norm_region: str | None = None, orient: str | None = None, layout: str | None = None,
                 weights: str | None = None, batch_size: int = 2, device: str = "auto", jobs: int = 1,
                 cache_dir: str | None = None, part: tuple[int, int] = (0, 1), seed: int = 0,
                 strict_geometry: bool = False, trust_checkpoint: bool = False,
                 keep_going: bool = False) -> CohortEmbedding:
    """The encoder's embedding of every case of a cohort manifest (or of part (part_id,
    num_parts) of it), as a case table: what `radlens embed` runs.

    spacing and crop are (x, y, z) tuples, or None for the encoder's record or the
    defaults (encoders.preprocess). A case that cannot be preprocessed is reported in one
    line and left out of the table (listed in `failures`, never raised). keep_going is
    only recorded."""
    if batch_size < 1:
        raise ParameterError(f"{{batch_size}} must be >= 1 (got {batch_size})", "batch_size")
    mods = parse_list(modalities, "modalities") if isinstance(modalities, str) else list(modalities)
    mask_spec = parse_mask_spec(mask)
    man = read_manifest(manifest)
    man.require_images(mods, mask_spec)
    dev = resolve_device(device)
    torch.manual_seed(seed)

    embedder = load_embedder(encoder, arch=arch, layer=layer, pool=pool, device=dev, trust=trust_checkpoint,
                             modalities=mods, weights=weights)
    info = embedder.info
    cfg = preprocessing_config(mods, mask_spec, spacing, crop, norm, info.preprocessing, orient=orient,
                               layout=layout, norm_region=norm_region, warn=log.warn)
    embedder.check_config(cfg)  # also picks a reused module's call: layer NAME#k, or NAME for one call
    fingerprint, layer = embedder.fingerprint, embedder.layer

    part_id, num_parts = part
    cases = cohort_part(man, manifest, "embed", part_id, num_parts)
    n = len(cases)
    if n == 0:
        log.info(f"nothing to do: part {part_id} of {num_parts} holds no case; writing an empty part")
    dataset = CaseDataset(cases, cfg, cache_dir=cache_dir, failures_as_records=True, strict_geometry=strict_geometry)
    batched = BatchedEmbedding(embedder, dataset, cases.case_ids, cfg, batch_size, jobs, cache_dir)
    log.info(f"embedding {n} case(s) of {manifest} with {info.arch} ({info.source}) on {dev}, "
             f"layer {layer}, crop {'x'.join(map(str, cfg.crop))} at {','.join(map(str, cfg.spacing))} mm")
    batched.run(encoder)
    results, case_inputs = batched.results, batched.case_inputs
    rows = sorted(results)
    values = np.stack([results[i] for i in rows], 0) if rows else np.zeros((0, 0))
    d = values.shape[1]
    params = {"modalities": mods, "mask": str(mask_spec), "encoder": encoder, "encoder_source": info.source,
              "arch": info.arch, "in_chans": info.in_chans, "embed_dim": d, "layer": layer, "pool": pool,
              "encoder_fingerprint": fingerprint, "preprocessing": cfg.to_dict(), "batch_size": batch_size,
              "device": dev.type, "precision": "bf16-autocast" if embedder.use_amp else "fp32",
              "part_id": part_id, "num_parts": num_parts, "seed": seed,
              "split_derived": bool(man.split_derived), "cache_dir": cache_dir, "keep_going": keep_going,
              "case_inputs": dict(sorted({**dataset.case_inputs(), **case_inputs}.items())),
              "trust_checkpoint": trust_checkpoint, "checkpoint_fully_unpickled": info.trusted}
    # a `radlens finetune` checkpoint's run and epoch, carried on to decode, compare and report
    # (which orders a trajectory by them); None for any other encoder
    ft = info.extra.get("finetune") if isinstance(info.extra, dict) else None
    params["finetune"] = ({k: ft.get(k) for k in ("task", "target", "run", "epoch", "best_epoch")}
                          if isinstance(ft, dict) else None)
    if embedder.layer_calls and embedder.layer_calls > 1:
        params["layer_calls"] = embedder.layer_calls  # the module runs that often per forward pass
    if info.absent_optional:
        params["encoder_absent_weights"] = info.absent_optional
    for key in ("weights", "weights_prefix", "onnx_input", "onnx_input_shape", "onnx_output", "onnx_providers"):
        if getattr(info, key) is not None:
            params[key] = getattr(info, key)
    sel = np.asarray(rows, dtype=np.int64)
    table = CaseTable(case_id=np.asarray(cases.case_ids)[sel], values=values,
                      columns=[f"emb_{j:04d}" for j in range(d)],
                      split=None if cases.split is None else np.asarray(cases.split)[sel],
                      column_meta={"layer": np.array([layer] * d, dtype=object)})
    return CohortEmbedding(table, batched.failures, params, n)
