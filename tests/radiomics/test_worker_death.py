"""A pool worker killed with SIGKILL mid-case (the OOM killer's way): that case fails, named,
after one retry in a fresh worker; the other cases are extracted and cached; a rerun
completes and equals an uninterrupted run. Uses the test-only RADLENS_TEST_KILL_WORKER hook
(workers fork from a forkserver, so the variable must be set when the run starts)."""

import os
import subprocess
import sys

from radlens_cli.io.tables import read_table
from tests.conftest import REPO
from tests.radiomics.conftest import make_cohort

PARAMS = "imageType: {Original: {}}\nfeatureClass: {firstorder: []}\nsetting: {binWidth: 25}\n"


def _run(manifest, params, out, cache, *extra, **env):
    cmd = [sys.executable, "-m", "radlens_cli", "extract-radiomics", str(manifest), "--modalities", "t2,adc",
           "--mask", "zones", "--params", str(params), "-o", str(out), "-j", "2", *extra]
    if cache:
        cmd += ["--cache-dir", str(cache)]
    full_env = dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(REPO), **env)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, encoding="utf-8", errors="replace")


def test_killed_worker_fails_its_case_and_the_run_goes_on(tmp_path):
    manifest = make_cohort(tmp_path / "c", n_cases=4)
    params = tmp_path / "p.yaml"
    params.write_text(PARAMS)
    out, cache = tmp_path / "out.h5", tmp_path / "cache"

    r = _run(manifest, params, out, cache, "--failures", tmp_path / "f.csv", RADLENS_TEST_KILL_WORKER="case02:adc")
    assert r.returncode == 1, r.stderr
    retry = [ln for ln in r.stderr.splitlines() if "retrying it in a fresh worker" in ln]
    assert len(retry) == 1 and "case case02, modality adc" in retry[0]
    assert "killed by signal 9 (SIGKILL; out of memory?)" in retry[0]
    failed = [ln for ln in r.stderr.splitlines() if "failed: case case02" in ln]
    assert len(failed) == 1 and "modality adc" in failed[0] and "killed by signal 9" in failed[0], r.stderr
    assert "(tried twice)" in failed[0]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("radlens extract-radiomics: error: 1 of 4 case(s) failed (case02") and "Traceback" not in r.stderr
    assert not out.exists() and "case02" in (tmp_path / "f.csv").read_text(encoding="utf-8")
    cached = sorted(f for f in os.listdir(cache) if f.endswith(".json"))
    assert len(cached) == 7 and not any("case02.adc" in f for f in cached)  # the lost task is not cached
    assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]

    # killed once only: the retry in a fresh worker succeeds
    r = _run(manifest, params, tmp_path / "once.h5", None, RADLENS_TEST_KILL_WORKER="case01",
             RADLENS_TEST_KILL_ONCE=str(tmp_path / "killed"))
    assert r.returncode == 0 and "retrying it in a fresh worker" in r.stderr, r.stderr
    assert (tmp_path / "killed").exists()

    r = _run(manifest, params, out, cache)  # the rerun does the lost task only
    assert r.returncode == 0 and "7 of 8 task(s) taken from the cache" in r.stderr, r.stderr
    fresh = tmp_path / "fresh.h5"
    assert _run(manifest, params, fresh, None, "-j", "1").returncode == 0
    a, b, c = (read_table(str(p)) for p in (out, fresh, tmp_path / "once.h5"))
    assert list(a.case_id) == list(b.case_id) and a.columns == b.columns
    assert a.values.tobytes() == b.values.tobytes() == c.values.tobytes()


def test_sigterm_and_sigint_leave_no_temporaries_nor_leaked_semaphores(tmp_path):
    import signal
    import time

    manifest = make_cohort(tmp_path / "c", n_cases=8, shape=(14, 32, 32))
    params = tmp_path / "p.yaml"
    params.write_text("imageType: {Original: {}}\nfeatureClass: {firstorder: [], glcm: [], glrlm: []}\n"
                      "setting: {binWidth: 2}\n")
    for sig, code, word in ((signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")):
        cache = tmp_path / f"cache{sig}"
        cmd = [sys.executable, "-m", "radlens_cli", "extract-radiomics", str(manifest), "--modalities", "t2,adc",
               "--mask", "zones", "--params", str(params), "-o", str(tmp_path / "out.h5"), "-j", "2",
               "--cache-dir", str(cache)]
        # a suite started in the background (`cmd &`) inherits SIGINT ignored, and so would the
        # run (as it should: a background job ignores Ctrl-C); the run under test gets the default
        proc = subprocess.Popen(cmd, env=dict(os.environ, TQDM_DISABLE="1", PYTHONPATH=str(REPO)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                encoding="utf-8", errors="replace",
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and not (
                cache.is_dir() and any(f.endswith(".json") for f in os.listdir(cache))):
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(sig)
        err = proc.communicate(timeout=60)[1]
        assert proc.returncode == code and err.strip().splitlines()[-1] == f"radlens extract-radiomics: {word}", err
        assert "leaked" not in err and "Traceback" not in err, err
        time.sleep(0.3)
        assert not [f for f in os.listdir(cache) if f.endswith(".tmp")]
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".out.h5")] and not (tmp_path / "out.h5").exists()
