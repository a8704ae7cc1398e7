"""kill -9 during `radlens embed`: the rerun with the same --cache-dir resumes and equals an
uninterrupted run; no output file ever appears before the run completes."""

import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np

from radlens_cli.io.tables import read_table
from tests.conftest import REPO
from tests.encoders.conftest import SMALL, write_cohort

ARGS = ["--modalities", "t2,dwi,adc", "--mask", "gland", "--batch-size", "1", *SMALL]


def _kill_after(cmd, env, cache, n_batches, timeout=90):
    proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while time.time() - t0 < timeout:
            done = glob.glob(os.path.join(cache, "embeddings", "*", "batch-*.npz"))
            if len(done) >= n_batches or proc.poll() is not None:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"embed ended before it could be killed: {proc.stderr.read().decode()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return len(glob.glob(os.path.join(cache, "embeddings", "*", "batch-*.npz")))


def test_kill_9_then_resume(cli, tmp_path, monkeypatch):
    manifest = write_cohort(str(tmp_path / "cohort"), n=6)
    cache, out = str(tmp_path / "cache"), tmp_path / "emb.h5"
    env = dict(os.environ, PYTHONPATH=str(REPO), RADLENS_TEST_SLEEP="0.4", TQDM_DISABLE="1")
    cmd = [sys.executable, "-m", "radlens_cli", "embed", manifest, *ARGS, "--encoder",
           "tests.encoders.factories:slow_atto3", "--cache-dir", cache, "-o", str(out)]
    seen = []
    for n_batches in (1, 3):  # killed at two points of the run
        seen.append(_kill_after(cmd, env, cache, n_batches))
        assert not out.exists()
        assert not [f for f in os.listdir(tmp_path) if f.startswith("emb.h5")]
    assert 1 <= seen[0] <= seen[1] < 6

    monkeypatch.setenv("RADLENS_TEST_SLEEP", "0")
    r = cli("embed", manifest, *ARGS, "--encoder", "tests.encoders.factories:slow_atto3", "--cache-dir", cache,
            "-o", out)
    assert r.exit_code == 0, r
    assert f"{seen[1]} of 6 batch(es) read" in r.stderr
    ref = tmp_path / "uninterrupted.h5"
    r = cli("embed", manifest, *ARGS, "--encoder", "tests.encoders.factories:slow_atto3", "-o", ref)
    assert r.exit_code == 0, r
    a, b = read_table(str(out)), read_table(str(ref))
    assert list(a.case_id) == list(b.case_id) and np.array_equal(a.values, b.values)
