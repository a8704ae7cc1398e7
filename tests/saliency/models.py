"""Tiny 3D models with heads for the saliency tests (`package.module:factory` specs)."""

import torch
import torch.nn as nn


class TinyNet(nn.Module):
    """conv - ReLU - conv - ReLU - (mean over space) - linear: a 3D classifier with a 2-voxel stride."""

    def __init__(self, in_chans: int = 3, n_out: int = 3, width: int = 6):
        super().__init__()
        self.conv1 = nn.Conv3d(in_chans, width, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv3d(width, width, 3, stride=2, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(width, n_out)

    def forward(self, x):
        a = self.act2(self.conv2(self.act(self.conv1(x))))
        out = self.fc(a.mean(dim=(2, 3, 4)))
        return out[:, 0] if self.fc.out_features == 1 else out


class SharedAct(TinyNet):
    """The same ReLU module called twice (conv1 and conv2 outputs): needs `act#k`."""

    def forward(self, x):
        a = self.act(self.conv2(self.act(self.conv1(x))))
        return self.fc(a.mean(dim=(2, 3, 4)))


def _seeded(cls, **kw):
    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(7)
        return cls(**kw).eval()


def tiny_classifier():
    return _seeded(TinyNet)


def tiny_regressor():
    return _seeded(TinyNet, n_out=1)


def shared_act():
    return _seeded(SharedAct)


class Bright(nn.Module):
    """Output = mean over space of ReLU(channel 0 - 1)^2 through a 1x1x1 conv layer: it reads
    only voxels brighter than 1 SD above the box mean (the gland of the phantom)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, 0] = 1.0
            self.conv.bias.fill_(-1.0)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        a = torch.relu(self.conv(x)) ** 2
        return self.fc(a.mean(dim=(2, 3, 4)))


def bright():
    return Bright().eval()


def write_finetuned(path, task: str, n_classes: int = 3, in_chans: int = 3):
    """A `radlens finetune`-style checkpoint (atto encoder + the task's head), seeded."""
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder
    from radlens_cli.encoders.tasks import build_head, head_config

    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(11)
        enc = build_encoder("atto", in_chans)
        n = n_classes if task == "classify" else 1
        head = build_head(task, enc, n).eval()
    meta = {"task": task, "head_config": head_config(head, n, list(enc.dims), {}),
            "head_state": {k: v.clone() for k, v in head.state_dict().items()}}
    save_radlens_checkpoint(str(path), enc, "convnextv2_atto", in_chans,
                            {"spacing": [1.0, 1.0, 2.0], "crop": [32, 32, 16], "crop_order": "x,y,z"},
                            extra={"finetune": meta})
    return enc, head
