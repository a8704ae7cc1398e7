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


class ReusedAct(torch.nn.Module):
    """One activation module run three times with three output shapes (like a shared ReLU):
    `act` after conv1 (4 channels, full size), conv2 (8, half) and conv3 (16, quarter)."""

    def __init__(self, in_chans=1):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv3d(in_chans, 4, 3, padding=1)
        self.conv2 = nn.Conv3d(4, 8, 3, stride=2, padding=1)
        self.conv3 = nn.Conv3d(8, 16, 3, stride=2, padding=1)
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(self.conv3(self.act(self.conv2(self.act(self.conv1(x))))))


def reused_act(seed=0):
    """ReusedAct with weights from `seed`."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ReusedAct().eval()


class Bottleneck3d(torch.nn.Module):
    """torchvision's ResNet Bottleneck in 3D: one `relu` after conv1, after conv2 (which
    strides) and after the residual add, i.e. three calls with three shapes."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv3d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                        nn.BatchNorm3d(planes * 4))

    def forward(self, x):
        identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class TinyResNet3d(torch.nn.Module):
    """A torchvision-style ResNet adapted to 3D, two bottleneck stages: the stem's `relu` runs
    once, each block's `relu` three times."""

    def __init__(self, in_chans=1):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv3d(in_chans, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(8)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(Bottleneck3d(8, 4))
        self.layer2 = nn.Sequential(Bottleneck3d(16, 8, stride=2))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_resnet3d(seed=0):
    """TinyResNet3d with weights (and batch-norm statistics) from `seed`, in eval mode."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = TinyResNet3d()
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.normal_(0, 0.1)
        return net.eval()


class LoopAct(torch.nn.Module):
    """A scripted loop calls `act` a number of times TorchScript cannot tell apart statically."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 1)
        self.act = torch.nn.ReLU()

    def forward(self, x):
        for _ in range(3):
            x = self.act(self.conv(x))
        return x
