"""Heads, losses, metrics, schedule, sampler and the training loop on in-memory data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from radlens_cli.encoders import ddp
from radlens_cli.encoders.heads import (ClassifyHead, RegressHead, UPerNetHead, dice_loss, dice_scores,
                                        quadratic_weighted_kappa)
from radlens_cli.encoders.tasks import better, build_head
from radlens_cli.encoders.training.augment import augment_batch
from radlens_cli.encoders.training.config import TrainConfig, lr_factor
from radlens_cli.encoders.training.loop import run_training
from radlens_cli.encoders.training.metrics import compute_metrics


class TinyEncoder(torch.nn.Module):
    """Stand-in with the ConvNeXtV23D interface (dims, forward_features, forward)."""

    def __init__(self, in_chans=1, dims=(4, 6, 8, 8)):
        super().__init__()
        self.dims = dims
        strides = (4, 2, 2, 1)
        chans = (in_chans,) + tuple(dims)
        self.convs = torch.nn.ModuleList(torch.nn.Conv3d(chans[i], chans[i + 1], strides[i], strides[i])
                                         for i in range(4))
        self.norm = torch.nn.LayerNorm(dims[-1])

    def forward_features(self, x):
        outs = []
        for c in self.convs:
            x = c(x)
            outs.append(x)
        return outs

    def forward(self, x):
        return self.norm(self.forward_features(x)[-1].mean((-3, -2, -1)))


# ---- metrics and losses ------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_qwk_matches_sklearn(seed):
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    y = rng.integers(0, k, 40)
    p = np.where(rng.random(40) < 0.6, y, rng.integers(0, k, 40))
    want = cohen_kappa_score(y, p, weights="quadratic")
    assert quadratic_weighted_kappa(y, p) == pytest.approx(want, abs=1e-12)
    labels = np.arange(k + 1)  # an unused class changes nothing but is accepted
    assert quadratic_weighted_kappa(y, p, labels=labels) == pytest.approx(
        cohen_kappa_score(y, p, weights="quadratic", labels=labels), abs=1e-12)


def test_qwk_edge_cases():
    assert quadratic_weighted_kappa([0, 1, 2, 3], [0, 1, 2, 3]) == pytest.approx(1.0)
    assert quadratic_weighted_kappa([0, 1, 2, 3], [3, 2, 1, 0]) == pytest.approx(-1.0)
    assert math.isnan(quadratic_weighted_kappa([1, 1], [1, 1]))  # one class: undefined, like sklearn


def test_dice_loss_closed_form():
    g = torch.zeros(1, 1, 2, 2, 2)
    g[0, 0, 0] = 1  # 4 foreground voxels
    big = 50.0
    perfect = torch.where(g > 0, big, -big)
    assert float(dice_loss(perfect, g, eps=0.0)) == pytest.approx(0.0, abs=1e-12)
    assert float(dice_loss(-perfect, g, eps=0.0)) == pytest.approx(1.0, abs=1e-12)
    # logits 0 -> p = 1/2 everywhere: 1 - 2 * (4 * 0.5) / (8 * 0.5 + 4) = 0.5
    assert float(dice_loss(torch.zeros_like(g), g, eps=0.0)) == pytest.approx(0.5, abs=1e-7)
    # smoothing: an empty target with an (almost) empty prediction costs nothing
    assert float(dice_loss(torch.full_like(g, -big), torch.zeros_like(g), eps=1.0)) == pytest.approx(0.0, abs=1e-9)
    # general value against an explicit numpy computation, batch mean
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 1, 3, 4, 5))
    tgt = (rng.random((3, 1, 3, 4, 5)) < 0.3).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    ref = np.mean([1 - (2 * (p[i] * tgt[i]).sum() + 1) / (p[i].sum() + tgt[i].sum() + 1) for i in range(3)])
    assert float(dice_loss(torch.tensor(logits), torch.tensor(tgt))) == pytest.approx(ref, rel=1e-6)


def test_dice_scores_and_metric_helpers():
    a = np.zeros((3, 4), bool)
    b = np.zeros((3, 4), bool)
    a[0, :2] = b[0, 1:3] = True  # 1 shared of 2 + 2 -> 0.5
    a[1, :] = True  # no overlap with empty -> 0
    np.testing.assert_allclose(dice_scores(a, b), [0.5, 0.0, 1.0])
    from radlens_cli.encoders.heads import dice_scores_torch

    logits = torch.where(torch.tensor(a), 3.0, -3.0)
    np.testing.assert_allclose(dice_scores_torch(logits, torch.tensor(b).float()).numpy(), dice_scores(a, b))
    assert better("qwk", 0.2, 0.1) and not better("qwk", 0.1, 0.2)
    assert better("mse", 0.1, 0.2) and not better("mse", float("nan"), 0.2)
    assert better("dice", 0.0, None) and better("dice", 0.1, float("nan"))
    recs = [{"pred": np.array([1.0, 2.0]), "true": np.array([0.0, 2.0])}]
    m = compute_metrics("regress", recs, scale=(5.0, 3.0))
    assert m["mse_std"] == pytest.approx(0.5) and m["mse"] == pytest.approx(0.5 * 9)


# ---- heads --------------------------------------------------------------------------------

def test_classify_and_regress_heads_are_the_papers():
    h = ClassifyHead(32, 4)
    assert [type(m).__name__ for m in h.children()] == ["Linear", "BatchNorm1d", "Linear"]
    assert h.fc1.out_features == 256 and h(torch.randn(3, 32)).shape == (3, 4)
    r = RegressHead(32)
    assert [type(m).__name__ for m in r.children()] == ["BatchNorm1d", "Linear"]
    assert r(torch.randn(3, 32)).shape == (3,)


@pytest.mark.parametrize("size", [(16, 32, 32), (16, 24, 40)])
def test_upernet_output_matches_input_size(size):
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    enc = build_encoder("atto", 2)
    head = build_head("segment", enc, channels=16)
    assert isinstance(head, UPerNetHead)
    x = torch.randn(1, 2, *size)  # batch 1 trains: pooled branches carry no BatchNorm
    feats = enc.forward_features(x)
    head.train()
    out = head(feats, out_size=x.shape[2:])
    assert out.shape == (1, 1, *size)
    out.mean().backward()
    assert all(p.grad is not None for p in head.parameters())


# ---- schedule, sampler, augmentation -----------------------------------------------------

def test_lr_schedule_warmup_then_cosine():
    total, warm = 20, 5
    f = [lr_factor(s, total, warm) for s in range(total)]
    np.testing.assert_allclose(f[:5], [0.2, 0.4, 0.6, 0.8, 1.0])
    assert f[5] == pytest.approx(1.0)
    ref = [0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))) for s in range(warm, total)]
    np.testing.assert_allclose(f[5:], ref)
    assert all(a >= b for a, b in zip(f[4:], f[5:]))


def test_epoch_batches_shard_like_distributed_sampler():
    n, world = 7, 2
    shards = [ddp.EpochBatches(n, 2, seed=3, dist=ddp.DistInfo(r, r, world), drop_single=False) for r in range(world)]
    for s in shards:
        s.set_epoch(1)
    idx = [s.indices() for s in shards]
    assert len(idx[0]) == len(idx[1]) == 4  # padded to a multiple of the world size
    assert set(idx[0]) | set(idx[1]) == set(range(n))
    one = ddp.EpochBatches(n, 2, seed=3)
    one.set_epoch(1)
    again = ddp.EpochBatches(n, 2, seed=3)
    again.set_epoch(1)
    assert one.indices() == again.indices()
    again.set_epoch(2)
    assert one.indices() != again.indices()
    assert [len(b) for b in one] == [2, 2, 2] and len(one) == 3  # a lone last case is dropped (BatchNorm)


def test_balanced_sampling_evens_out_classes():
    cls = np.array([0] * 90 + [1] * 10)
    w = 1.0 / np.bincount(cls)[cls]
    s = ddp.EpochBatches(100, 10, seed=0, weights=w)
    drawn = np.concatenate([cls[s.indices()] for s.epoch in range(20)])
    assert 0.4 < drawn.mean() < 0.6


def test_augmentation_is_deterministic_and_flips_the_target_with_the_image():
    x = torch.arange(2 * 2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 2, 3, 4, 5)
    seg = (x[:, 0] > 60).float()
    a1, s1 = augment_batch(x, seg, 7)
    a2, s2 = augment_batch(x, seg, 7)
    assert torch.equal(a1, a2) and torch.equal(s1, s2)
    assert not torch.equal(augment_batch(x, seg, 8)[0], a1)
    # the segmentation stays aligned: undo the intensity change, compare to the flipped target
    for i in range(2):
        rank0 = a1[i, 0].flatten().argsort().argsort()  # monotone intensity map keeps the order
        expect = (rank0 > int((x[i, 0] <= 60).sum()) - 1).reshape(3, 4, 5).float()
        assert torch.equal(expect, s1[i])


# ---- the loop on in-memory data ----------------------------------------------------------

class MemoryDataset(torch.utils.data.Dataset):
    def __init__(self, n, seed, task="classify"):
        g = torch.Generator().manual_seed(seed)
        self.cls = torch.arange(n) % 2
        self.x = torch.randn(n, 1, 16, 16, 16, generator=g) + self.cls.view(n, 1, 1, 1, 1).float()
        self.seg = (self.x[:, 0] > 1).to(torch.uint8)
        self.task = task

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"case_id": f"m{i}", "volume": self.x[i], "target": float(self.cls[i]), "seg_target": self.seg[i]}


def _train(task, **kw):
    torch.manual_seed(0)
    enc = TinyEncoder()
    start = {k: v.clone() for k, v in enc.state_dict().items()}
    cfg = TrainConfig(task=task, epochs=2, batch_size=2, warmup_epochs=0,
                      head_kwargs={"channels": 8} if task == "segment" else {}, **kw)
    ds = {"train": MemoryDataset(6, 0, task), "val": MemoryDataset(2, 1, task), "test": MemoryDataset(2, 2, task)}
    res = run_training(enc, task, ds, cfg, torch.device("cpu"), n_classes=2 if task == "classify" else 1,
                       class_of_train=[0, 1] * 3)
    return start, res


def test_freeze_encoder_trains_the_head_only():
    start, res = _train("classify", freeze_encoder=True)
    for k, v in start.items():
        assert torch.equal(res["encoder_state"][k], v), k
    start, res = _train("classify")
    assert any(not torch.equal(res["encoder_state"][k], v) for k, v in start.items())


@pytest.mark.parametrize("task", ["classify", "regress", "segment"])
def test_loop_runs_every_task_and_reports_test_last(task):
    _, res = _train(task, balanced=task == "classify")
    splits = [r["split"] for r in res["history"]]
    assert splits == ["train", "val", "train", "val", "test"]
    assert res["history"][-1]["epoch"] == res["best_epoch"]
    assert res["metric"] in res["history"][-1]
