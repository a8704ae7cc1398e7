"""The example Makefile's `stability` target is wired: a dry run lists perturb, the
radiomics of the replicates, stability and the report with --stability, in that order."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_stability_target_dry_run(tmp_path):
    if shutil.which("make") is None:
        pytest.fail("GNU make not installed (apt-get install make; .ci/run does)")
    r = subprocess.run(["make", "-n", "-C", str(REPO / "examples"), f"OUT={tmp_path / 'work'}", "REPLICATES=3",
                        f"RADLENS={sys.executable} -m radlens_cli", "stability"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = r.stdout
    steps = [" perturb ", " extract-radiomics " + str(tmp_path / "work" / "perturbed" / "cohort.csv"), " stability ",
             " report "]
    pos = [text.find(s) for s in steps]
    assert all(p >= 0 for p in pos), (steps, text[-3000:])
    assert pos == sorted(pos)
    assert "--replicates 3" in text and "--stability " + str(tmp_path / "work" / "icc.csv") in text
