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
