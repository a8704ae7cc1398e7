"""radlens in scripts, Makefiles and SLURM array jobs, through the real executable.

The shipped examples/slurm scripts run under a fake `sbatch` (tests/fake_sbatch.py)
that executes every array task in turn and honours afterok dependencies.
"""

import json
import os
import shutil
import stat
import subprocess
import sys

import h5py
import numpy as np
import pytest

from radlens_cli.io.tables import read_table
from tests.conftest import REPO
from tests.encoders.conftest import write_cohort

TINY = "imageType: {Original: {}}\nfeatureClass: {firstorder: []}\nsetting: {binWidth: 25, label: 1}\n"


@pytest.fixture
def bin_dir(tmp_path):
    """PATH entries: `radlens` (this checkout) and the fake `sbatch`."""
    d = tmp_path / "bin"
    d.mkdir()
    for name, body in (("radlens", f'exec "{sys.executable}" -m radlens_cli "$@"'),
                       ("sbatch", f'exec "{sys.executable}" "{REPO}/tests/fake_sbatch.py" "$@"')):
        p = d / name
        p.write_text(f"#!/bin/bash\n{body}\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return d


def env_with(bin_dir, tmp_path, **extra):
    env = dict(os.environ)
    env.update({"PATH": f"{bin_dir}:{env['PATH']}", "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1",
                "FAKE_SLURM_DIR": str(tmp_path)})
    for k in [k for k in env if k.startswith("SLURM_")]:
        del env[k]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def attrs(path):
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def test_slurm_examples_end_to_end_with_failures_and_idle_tasks(tmp_path, bin_dir):
    """submit.sh as written: 3 cases, one broken, 5 radiomics tasks (2 with no case), a step
    array for embeddings; relative paths from the submission folder; every merge runs."""
    sub = tmp_path / "project"
    cohort = sub / "data"
    write_cohort(str(cohort), n=3)
    os.remove(cohort / "p01_adc.nii.gz")  # p01 fails in both extraction and embedding
    (sub / "tiny.yaml").write_text(TINY)
    import torch

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    save_radlens_checkpoint(str(sub / "pre.pt"), build_encoder("atto", 3), "convnextv2_atto", 3, None)
    env = env_with(bin_dir, tmp_path, MANIFEST="data/cohort.csv", PARAMS="tiny.yaml", WORK="work", PRE="pre.pt",
                   RAD_ARRAY="0-3", EMB_ARRAY="0-3:2", DEVICE="cpu",
                   EMBED_OPTS="--crop 16,32,32 --spacing 1,1,2")
    r = subprocess.run(["bash", str(REPO / "examples/slurm/submit.sh")], cwd=sub, env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    jobs = json.load(open(tmp_path / "jobs.json"))["jobs"]
    logs = {p: (sub / "logs" / p).read_text() for p in os.listdir(sub / "logs")}
    assert list(jobs.values()) == ["COMPLETED"] * 4, (jobs, "\n".join(f"{k}: {v}" for k, v in logs.items()))
    assert any("nothing to do: part 3 of 4" in t for t in logs.values())
    assert any("part 1 of 4: 1 case(s)" in t and "case p01" in t for t in logs.values())

    rad = read_table(str(sub / "work/radiomics.h5"))
    assert list(rad.case_id) == ["p00", "p02"]
    a = attrs(sub / "work/radiomics.h5")
    assert {f["case_id"] for f in json.loads(a["failures"])} == {"p01"} and "radlens_part" not in a
    assert json.loads(a["inputs"])["manifest"]["path"] == "data/cohort.csv"
    emb = read_table(str(sub / "work/emb-pre.h5"))
    assert list(emb.case_id) == ["p00", "p02"] and emb.values.shape[1] == 320
    p = json.loads(attrs(sub / "work/emb-pre.h5")["params"])
    assert p["parts"] == [0, 1] and p["layer"] == "final" and p["encoder_fingerprint"]
    assert np.isfinite(emb.values).all()

    # without --keep-going a failed case blocks the merge: exit 1, no part, afterok never met
    shutil.rmtree(sub / "work")
    text = (REPO / "examples/slurm/extract.sbatch").read_text().replace(" --keep-going", "")
    strict = sub / "strict.sbatch"
    strict.write_text(text)
    r = subprocess.run(["sbatch", "--parsable", "--array=0-0", str(strict)], cwd=sub, env=env,
                       capture_output=True, text=True)
    job = r.stdout.strip()
    r = subprocess.run(["sbatch", "--parsable", f"--dependency=afterok:{job}",
                        str(REPO / "examples/slurm/merge.sbatch")], cwd=sub, env=env, capture_output=True, text=True)
    jobs = json.load(open(tmp_path / "jobs.json"))["jobs"]
    assert jobs[job] == "FAILED" and jobs[r.stdout.strip()] == "DependencyNeverSatisfied"
    assert sorted(os.listdir(sub / "work/parts")) == ["failures-000.csv", "failures-000.csv.json"]


def test_makefile_stops_at_a_failing_case_and_resumes(tmp_path, bin_dir):
    """make stops at the failed case, the target is not made (so the next make does not go
    on with a partial cohort), and the rerun after the fix takes the rest from the cache."""
    write_cohort(str(tmp_path / "c"), n=3)
    (tmp_path / "tiny.yaml").write_text(TINY)
    saved = tmp_path / "saved.nii.gz"
    shutil.move(tmp_path / "c/p01_t2.nii.gz", saved)
    (tmp_path / "Makefile").write_text(
        "all: info.txt\n"
        "rad.h5: c/cohort.csv\n"
        "\tradlens extract-radiomics c/cohort.csv --modalities t2 --mask gland --params tiny.yaml "
        "--cache-dir cache -o $@ -f\n"
        "info.txt: rad.h5\n"
        "\tradlens info rad.h5 > $@\n")
    env = env_with(bin_dir, tmp_path)
    for _ in range(2):  # a second make does not go on with a partial table
        r = subprocess.run(["make", "-s"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert r.returncode != 0 and "1 of 3 case(s) failed (p01" in r.stderr, r.stderr
        assert not (tmp_path / "rad.h5").exists() and not (tmp_path / "info.txt").exists()
        assert not [f for f in os.listdir(tmp_path) if f.startswith(".rad.h5")]  # no temporary left
    shutil.move(saved, tmp_path / "c/p01_t2.nii.gz")
    r = subprocess.run(["make", "-s"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "2 of 3 task(s) taken from the cache" in r.stderr
    assert read_table(str(tmp_path / "rad.h5")).n_cases == 3
