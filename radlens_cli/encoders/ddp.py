"""Distributed data parallel plumbing for `radlens finetune` under torchrun.

torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT; one process per GPU
(nccl) or per CPU worker (gloo). Only rank 0 writes files. Without those variables
everything here degrades to a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from radlens_cli.devices import resolve_device as resolve


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """Rank and world size from torchrun's environment variables (1 process if unset)."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    return DistInfo(rank=rank, local_rank=local, world_size=world)


def resolve_device(spec: str, dist: DistInfo) -> torch.device:
    """radlens_cli.devices.resolve_device with this process's rank: `cuda` is its own GPU."""
    return resolve(spec, dist.local_rank if dist.enabled else None)


def init(dist: DistInfo, device: torch.device) -> None:
    """Join the process group: nccl for CUDA devices, gloo for CPU."""
    if not dist.enabled:
        return
    import torch.distributed as td

    if td.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    td.init_process_group(backend=backend, rank=dist.rank, world_size=dist.world_size)


def shutdown(dist: DistInfo) -> None:
    if not dist.enabled:
        return
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()


def barrier(dist: DistInfo) -> None:
    if dist.enabled:
        import torch.distributed as td

        if td.get_backend() == "nccl":  # tell NCCL which GPU this rank owns
            td.barrier(device_ids=[torch.cuda.current_device()])
        else:
            td.barrier()


def all_gather_objects(obj, dist: DistInfo) -> list:
    """Every rank's `obj`, in rank order (just [obj] in one process)."""
    if not dist.enabled:
        return [obj]
    import torch.distributed as td

    out = [None] * dist.world_size
    td.all_gather_object(out, obj)
    return out


def broadcast_object(obj, dist: DistInfo, src: int = 0):
    """Rank `src`'s `obj` on every rank."""
    if not dist.enabled:
        return obj
    import torch.distributed as td

    box = [obj]
    td.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: list[float], dist: DistInfo, device: torch.device) -> list[float]:
    """Element-wise sum of a short list of floats over ranks."""
    if not dist.enabled:
        return list(values)
    import torch.distributed as td

    t = torch.tensor(values, dtype=torch.float64, device=device)
    td.all_reduce(t)
    return t.tolist()


def sync_buffers(model: torch.nn.Module, dist: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank, so evaluation and the
    kept weights agree across ranks (each rank updates them on its own batches)."""
    if not dist.enabled:
        return
    import torch.distributed as td

    for b in model.buffers():
        td.broadcast(b, src=0)


def wrap(model: torch.nn.Module, dist: DistInfo, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel around `model` when running under torchrun."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [device.index] if device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=ids[0] if ids else None)


class EpochBatches:
    """Deterministic batches for one epoch, sharded over ranks like DistributedSampler.

    The order depends only on (seed, epoch): a permutation of the training cases, or,
    with `weights`, a class-balanced draw with replacement (torch.multinomial). It is
    padded by repetition to a multiple of world_size and rank r takes every
    world_size-th index from r. A last batch of a single case is dropped when
    `drop_single` (BatchNorm cannot train on one sample).
    """

    def __init__(self, n: int, batch_size: int, seed: int, dist: DistInfo = DistInfo(),
                 weights=None, drop_single: bool = True):
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.dist = dist
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.drop_single = drop_single
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        else:
            order = torch.randperm(self.n, generator=g).tolist()
        world = self.dist.world_size
        total = -(-self.n // world) * world
        order = (order * (total // max(len(order), 1) + 1))[:total]
        return order[self.dist.rank::world]

    def __iter__(self):
        idx = self.indices()
        for start in range(0, len(idx), self.batch_size):
            batch = idx[start:start + self.batch_size]
            if len(batch) == 1 and self.drop_single and len(idx) > 1:
                continue
            yield batch

    def __len__(self) -> int:
        m = -(-self.n // self.dist.world_size)
        full, rest = divmod(m, self.batch_size)
        return full + (1 if rest > 1 or (rest == 1 and (not self.drop_single or m == 1)) else 0)
