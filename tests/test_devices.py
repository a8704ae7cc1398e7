"""One device resolver (radlens_cli.devices) behind embed, finetune (ddp) and fit-share.

CUDA is simulated by patching torch.cuda's queries, so the rules are checked on any
machine; nothing here allocates on a GPU.
"""

import pytest
import torch

from radlens_cli import devices
from radlens_cli.errors import UsageError


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)


def test_cpu_values(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("auto", None, "", " CPU ", "cpu"):
        assert devices.resolve_device(spec) == torch.device("cpu"), spec


def test_cuda_without_cuda_is_a_usage_error_naming_the_value(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(UsageError, match=f"device {spec}: CUDA is not available on this machine"):
            devices.resolve_device(spec)


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "mps", "cuda0"])
def test_unknown_values_are_refused(spec):
    with pytest.raises(UsageError, match=r"expected auto, cpu, cuda or cuda:N") as e:
        devices.resolve_device(spec)
    assert "--device" not in str(e.value)  # library errors name values, the command knows the flag


def test_cuda_rules(two_gpus):
    r = devices.resolve_device
    assert r("auto") == torch.device("cuda", 1)  # the current GPU
    assert r("cuda") == torch.device("cuda", 1)
    assert r("cuda:0") == torch.device("cuda", 0)
    assert r("cuda", local_rank=0) == torch.device("cuda", 0)  # torchrun: the rank's own GPU
    assert r("cuda:1", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(UsageError, match="under torchrun"):
        r("cuda:0", local_rank=1)
    with pytest.raises(UsageError, match="this machine has 2 CUDA device"):
        r("cuda:2")


def test_every_caller_uses_the_one_resolver(two_gpus):
    from radlens_cli.encoders import embedding as embed
    from radlens_cli.encoders import ddp
    from radlens_cli.lens import share

    assert embed.resolve_device is devices.resolve_device
    assert share.resolve_device is devices.resolve_device
    assert ddp.resolve_device("cuda", ddp.DistInfo(rank=1, local_rank=1, world_size=2)) == torch.device("cuda", 1)
    assert ddp.resolve_device("cuda", ddp.DistInfo()) == torch.device("cuda", 1)  # one process: current GPU
