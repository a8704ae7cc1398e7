"""Issue 7: interrupted runs lose nothing -- finetune killed (-9) at several points.

extract-radiomics and embed are killed at two points each in tests/radiomics/test_interrupt.py
and tests/commands/test_embed_interrupt.py; tests/commands/test_finetune.py kills finetune
once. Here finetune is killed twice in a row -- first inside epoch 1 (before any resume
state exists), then in the rerun inside epoch 3 (resuming from the state of epoch 2) -- and
the third run of the same command ends with the bytes-equal weights and metrics of an
uninterrupted run; no output file appears before the run completes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _tensors(obj, prefix=""):
    import torch

    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{prefix}/{k}")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from typer.testing import CliRunner

    from radlens_cli.main import app

    d = tmp_path_factory.mktemp("finetune kills")
    run = CliRunner()
    for args in (["synth", "-o", str(d / "c"), "--cases", "6", "--size", "24,24,8", "--spacing", "1,1,2"],
                 ["init-encoder", "--arch", "atto", "--in-chans", "1", "-o", str(d / "enc.pt")]):
        r = run.invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    return d


def test_finetune_killed_twice_then_resumed_equals_uninterrupted(cli, setup, tmp_path):
    import torch

    d = setup
    args = [d / "c" / "cohort.csv", "--modalities", "t2", "--mask", "gland", "--encoder", d / "enc.pt",
            "--task", "classify", "--target", "risk", "--crop", "16,16,16", "--spacing", "1,1,2",
            "--epochs", "3", "--warmup-epochs", "0", "--batch-size", "2", "--seed", "1", "--device", "cpu",
            "--drop-path", "0.1"]
    ref = tmp_path / "ref.pt"
    r = cli("finetune", *args, "--metrics", tmp_path / "ref.csv", "-o", ref)
    assert r.exit_code == 0, r
    out = tmp_path / "run.pt"
    state = Path(f"{out}.state")
    cmd = [sys.executable, "-m", "radlens_cli", "finetune", *map(str, args), "--metrics", str(tmp_path / "m.csv"),
           "-o", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1", OMP_NUM_THREADS=str(torch.get_num_threads()))

    def run(kill_at=None):
        e = dict(env, RADLENS_FINETUNE_KILL_AT_STEP=str(kill_at)) if kill_at else env
        return subprocess.run(cmd, cwd=REPO, env=e, capture_output=True, text=True, timeout=300)

    # 4 train cases, batch 2: 2 optimiser steps per epoch
    r = run(kill_at=2)  # killed inside epoch 1: nothing to resume from yet
    assert r.returncode == -9, r.stderr
    assert not out.exists() and not state.exists()
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".run.pt")]
    r = run(kill_at=6)  # the same command, killed inside epoch 3
    assert r.returncode == -9, r.stderr
    assert not out.exists() and state.exists()
    assert torch.load(state, weights_only=True)["epoch"] == 2
    r = run()
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "2 of 3 epoch(s) done" in r.stderr
    assert out.exists() and not state.exists()
    a = dict(_tensors(torch.load(ref, map_location="cpu", weights_only=False)))
    b = dict(_tensors(torch.load(out, map_location="cpu", weights_only=False)))
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert (tmp_path / "m.csv").read_text() == (tmp_path / "ref.csv").read_text()
