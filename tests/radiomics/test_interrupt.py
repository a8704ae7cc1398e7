"""kill -9 during a run, at several points; the rerun with the same cache finishes and equals
an uninterrupted run; the output name never holds a partial file."""

import os
import signal
import subprocess
import sys
import time

from radlens_cli.io.tables import read_table
from tests.conftest import REPO
from tests.radiomics.conftest import make_cohort

PARAMS = ("imageType:\n  Original: {}\nfeatureClass:\n  firstorder: []\n  glcm: []\n  glrlm: []\n  glszm: []\n"
          "setting:\n  binWidth: 2\n")


def _cmd(manifest, params, out, cache, jobs):
    return [sys.executable, "-m", "radlens_cli", "extract-radiomics", str(manifest), "--modalities", "t2,adc",
            "--mask", "zones", "--params", str(params), "-o", str(out), "-j", str(jobs),
            "--cache-dir", str(cache), "-f"]


def _env():
    env = dict(os.environ, TQDM_DISABLE="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _finished(cache):
    return [f for f in os.listdir(cache) if f.endswith(".json")] if os.path.isdir(cache) else []


def test_kill_9_and_resume(tmp_path):
    manifest = make_cohort(tmp_path / "c", n_cases=8, shape=(14, 32, 32))
    params = tmp_path / "p.yaml"
    params.write_text(PARAMS)
    out, cache = tmp_path / "out.h5", tmp_path / "cache"
    kills = []
    for jobs, more in ((2, 2), (1, 2)):  # kill -9 twice, at two points of the run
        time.sleep(0.5)  # orphaned pool workers of the previous kill finish their task first
        before = len(_finished(cache))
        stop_at = before + more  # relative: on a loaded machine the orphans may finish several
        proc = subprocess.Popen(_cmd(manifest, params, out, cache, jobs), env=_env(), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and len(_finished(cache)) < stop_at:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        kills.append((before, len(_finished(cache))))
        assert not out.exists()  # no output under its name, complete or not
    time.sleep(0.5)  # orphaned pool workers finish their task (atomic cache writes) and exit
    assert kills[1][1] > kills[1][0] >= kills[0][1] > 0
    done = len(_finished(cache))
    assert done < 16

    r = subprocess.run(_cmd(manifest, params, out, cache, 2), env=_env(), cwd=REPO, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert r.returncode == 0, r.stderr
    assert f"of 16 task(s) taken from the cache" in r.stderr
    resumed = read_table(str(out))

    fresh = tmp_path / "fresh.h5"
    r = subprocess.run(_cmd(manifest, params, fresh, tmp_path / "cache2", 1), env=_env(), cwd=REPO,
                       capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert r.returncode == 0, r.stderr
    full = read_table(str(fresh))
    assert list(resumed.case_id) == list(full.case_id) and resumed.columns == full.columns
    assert resumed.values.tobytes() == full.values.tobytes()
    leftovers = [f for f in os.listdir(tmp_path) if f.startswith(".out.h5.")]
    assert not leftovers
