"""Batches of finetune: collate, the indexed training subset, targets, the preprocessing pre-pass."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import numpy as np
import torch

from radlens_cli import log
from radlens_cli.encoders import ddp
from radlens_cli.encoders.preprocess import worker_error
from radlens_cli.errors import RadlensError
from radlens_cli.workers import test_kill_hook


def collate(items: list[dict]) -> dict:
    """Stack volumes (B,C,D,H,W), targets (B,) and segmentation targets (B,D,H,W)."""
    out = {"case_id": [it["case_id"] for it in items],
           "index": torch.tensor([int(it.get("index", -1)) for it in items]),
           "volume": torch.stack([torch.as_tensor(it["volume"]).float() for it in items])}
    tgt = [it.get("target") for it in items]
    out["target"] = None if any(t is None for t in tgt) else torch.tensor([float(t) for t in tgt])
    seg = [it.get("seg_target") for it in items]
    out["seg_target"] = None if any(s is None for s in seg) else torch.stack([torch.as_tensor(s) for s in seg]).float()
    return out


class IndexedSubset(torch.utils.data.Dataset):
    """A subset of a dataset by index, which adds each item's position in the subset."""

    def __init__(self, base, indices):
        self.base = base
        self.indices = list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        item = dict(self.base[self.indices[i]])
        item["index"] = i
        if torch.utils.data.get_worker_info() is not None and "case_id" in item:
            test_kill_hook(str(item["case_id"]))  # test-only (RADLENS_TEST_KILL_WORKER)
        return item


def case_ids_of(ds) -> list | None:
    """The case ids of a dataset or of a Subset of one (for messages)."""
    if hasattr(ds, "case_ids"):
        return list(ds.case_ids)
    base = case_ids_of(getattr(ds, "dataset", None)) if hasattr(ds, "dataset") else None
    return [base[i] for i in ds.indices] if base is not None and hasattr(ds, "indices") else None


def targets_of(batch: dict, task: str) -> torch.Tensor:
    if task == "segment":
        if batch["seg_target"] is None:
            raise RadlensError("segmentation targets missing from the dataset items")
        return batch["seg_target"]
    if batch["target"] is None:
        raise RadlensError("targets missing from the dataset items")
    return batch["target"]


class _SegTargetFlag(torch.utils.data.Dataset):
    """Loads a case (filling the cache) and returns only whether its seg target is non-empty."""

    def __init__(self, ds, indices):
        self.ds, self.indices = ds, list(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        seg_target = self.ds[self.indices[i]]["seg_target"]
        return bool(seg_target.numel() and seg_target.any())


def prepass(ds, dist: ddp.DistInfo, device, task: str, where: str, column: str | None,
             workers: int = 0) -> None:
    """Preprocess every case once (fills the cache, surfaces bad cases before training)."""
    mine = range(dist.rank, len(ds), dist.world_size)
    loader = torch.utils.data.DataLoader(_SegTargetFlag(ds, mine), batch_size=None, num_workers=workers)
    nonempty = 0
    try:
        for flag in log.progress(loader, total=len(mine), desc=f"preprocess {where}", unit="case"):
            nonempty += int(flag)
    except RadlensError as e:
        raise worker_error(e) from None
    if task == "segment" and where == "train":
        (nonempty,) = ddp.all_reduce_sum([float(nonempty)], dist, device)
        if nonempty == 0:
            raise RadlensError(f"segmentation mask {column} is empty inside the crop box for every "
                               f"training case; nothing to learn (wrong column or labels?)")


SPLITS = ("train", "val", "test")


def split_datasets(full, split) -> dict:
    """{"train": ds, "val": ds, "test": ds}: the manifest's split column over one dataset."""
    return {s: torch.utils.data.Subset(full, np.flatnonzero(split == s).tolist()) for s in SPLITS}


@contextlib.contextmanager
def training_cache(cache_dir: str | None, dist: ddp.DistInfo):
    """The folder of preprocessed volumes: `cache_dir`, else a temporary one removed at the end.

    Preprocess once per run, not once per epoch; rank 0's folder is shared on one node.
    """
    if cache_dir is not None:
        yield cache_dir
        return
    tmp_cache = tempfile.TemporaryDirectory(prefix="radlens-finetune-cache-", ignore_cleanup_errors=True) if dist.is_main else None
    path = ddp.broadcast_object(tmp_cache.name if tmp_cache else None, dist)
    if not os.path.isdir(path):  # another node
        tmp_cache = tempfile.TemporaryDirectory(prefix="radlens-finetune-cache-", ignore_cleanup_errors=True)
        path = tmp_cache.name
    try:
        yield path
    finally:
        if tmp_cache is not None:
            # A loader worker may still be writing a volume into it when a failed case stops
            # the run: a racing rmtree must not replace the case's one-line error.
            tmp_cache.cleanup()
            shutil.rmtree(tmp_cache.name, ignore_errors=True)
