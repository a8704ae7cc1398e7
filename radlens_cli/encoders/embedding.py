"""Embedding a dataset of cases in fixed batches: the batch cache, the loader, failed cases.

`radlens embed` reads the manifest and the encoder, builds a CaseDataset and a Embedder,
and hands them to `BatchedEmbedding`; what comes back is one embedding per case that
succeeded, the failure records and the inputs read (DICOM objects, geometry warnings).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sys
import tempfile

import numpy as np

from radlens_cli import log, provenance
from radlens_cli.errors import RadlensError
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
                except RadlensError as e:
                    raise RadlensError(unwrap_worker_error(e)) from None
                except Exception as e:  # noqa: BLE001 - worker errors arrive wrapped
                    raise RadlensError(unwrap_worker_error(e)) from None
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
