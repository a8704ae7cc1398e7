"""`package.module:factory` encoders used by the tests."""

import os
import time

import torch


def atto3():
    """A seeded atto encoder with three input channels."""
    from radlens_cli.encoders.convnextv2 import build_encoder

    g = torch.random.fork_rng()
    with g:
        torch.manual_seed(123)
        return build_encoder("atto", 3)


class _Slow(torch.nn.Module):
    """Sleeps RADLENS_TEST_SLEEP seconds per batch so a test can kill a run midway."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        time.sleep(float(os.environ.get("RADLENS_TEST_SLEEP", "0")))
        return self.inner(x)


def slow_atto3():
    return _Slow(atto3())


class TrainRecipe:
    """A training script's own config object, pickled into its checkpoints (as many scripts
    do): loading it needs this class, i.e. full unpickling."""

    def __init__(self, lr=1e-3, epochs=100):
        self.lr, self.epochs = lr, epochs


class Marker:
    """Unpickling this runs a shell command that creates MARKER (a stand-in for any code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


class TinySegNet(torch.nn.Module):
    """A small segmentation network with named sub-modules (like MONAI's): the logits are no
    embedding, `encoder.act2` (B, 8, ...) is."""

    def __init__(self, in_chans=1):
        from collections import OrderedDict

        super().__init__()
        nn = torch.nn
        self.encoder = nn.Sequential(OrderedDict(
            conv1=nn.Conv3d(in_chans, 4, 3, padding=1), act1=nn.ReLU(),
            down=nn.Conv3d(4, 8, 3, stride=2, padding=1), act2=nn.ReLU()))
        self.bottleneck = nn.Conv3d(8, 8, 1)
        self.decoder = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv3d(8, 2, 1))

    def forward(self, x):
        return self.decoder(self.bottleneck(self.encoder(x)))


def tiny_segnet(seed=0):
    """TinySegNet with weights from `seed` (the factory `embed --weights` loads into)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TinySegNet().eval()
