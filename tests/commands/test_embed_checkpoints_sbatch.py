"""examples/slurm/embed-checkpoints.sbatch: array task i embeds (and decodes) the i-th checkpoint."""

import os
import shutil
import stat
import subprocess

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "examples" / "slurm" / "embed-checkpoints.sbatch"


def _run(tmp_path, task, share=True):
    if shutil.which("bash") is None:
        pytest.skip("bash not installed")
    fake = tmp_path / "bin" / "radlens"
    fake.parent.mkdir(exist_ok=True)
    fake.write_text('#!/bin/sh\necho "$@" >> "$FAKE_LOG"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "ckpts.txt").write_text("runs/ft-epoch001.pt\nruns/ft-epoch002.pt\nruns/ft-epoch003.pt\n")
    env = dict(os.environ, PATH=f"{fake.parent}:{os.environ['PATH']}", FAKE_LOG=str(tmp_path / "log"),
               CHECKPOINTS="ckpts.txt", SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_COUNT="3",
               SLURM_CPUS_PER_TASK="4", SHARE="work/share.h5" if share else "")
    r = subprocess.run(["bash", str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    log = (tmp_path / "log").read_text().splitlines() if (tmp_path / "log").exists() else []
    (tmp_path / "log").unlink(missing_ok=True)
    return r, log


def test_each_task_embeds_its_own_checkpoint_whole(tmp_path):
    r, log = _run(tmp_path, 1)
    assert r.returncode == 0, r.stderr
    assert len(log) == 2
    embed, decode = log[0].split(), log[1].split()
    assert embed[0] == "embed" and embed[embed.index("--encoder") + 1] == "runs/ft-epoch002.pt"
    # the array index is a checkpoint, not a shard of the cases
    assert embed[embed.index("--part-id") + 1] == "0" and embed[embed.index("--num-parts") + 1] == "1"
    assert embed[embed.index("-o") + 1] == "work/emb-ft-epoch002.h5"
    assert decode[:4] == ["decode", "work/share.h5", "work/emb-ft-epoch002.h5", "work/radiomics.h5"]
    assert decode[decode.index("-o") + 1] == "work/dec-ft-epoch002.h5"
    r, log = _run(tmp_path, 0, share=False)
    assert r.returncode == 0 and len(log) == 1 and "runs/ft-epoch001.pt" in log[0]
    r, log = _run(tmp_path, 3)
    assert r.returncode == 2 and "no line 4 in ckpts.txt" in r.stderr and log == []
