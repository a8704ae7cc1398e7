"""Fixtures for the lens tests (the planted cohort and the lens run: tests/conftest.py, tests/planted.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    # tiny models: extra OpenMP threads only spin against other jobs on a shared 2-core box
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
