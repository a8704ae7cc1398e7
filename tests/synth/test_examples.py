"""examples/Makefile wiring: every step, file targets, and reruns doing only what is stale.

A stand-in `radlens` that only creates its outputs runs the whole DAG in a second; the real
commands are exercised by the end-to-end test of the merged pipeline.
"""

import os
import shutil
import stat
import subprocess

import pytest

from tests.conftest import REPO

FAKE = r"""#!/bin/sh
# stand-in radlens: log the subcommand, create every output it names
echo "$1" >> "$FAKE_LOG"
cmd=$1; shift
every=; epochs=; model=
while [ $# -gt 0 ]; do
  case "$1" in
    -o|--metrics|--figures) flag=$1; out=$2; shift 2
      [ "$flag" = -o ] && model=$out
      # --metrics is an output of finetune only (report reads it)
      if [ "$flag" = --metrics ] && [ "$cmd" != finetune ]; then :
      elif [ "$cmd" = synth ] || [ "$flag" = --figures ]; then mkdir -p "$out"; [ "$cmd" = synth ] && touch "$out/cohort.csv"
      else touch "$out"; fi ;;
    --save-every) every=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    *) shift ;;
  esac
done
# finetune --save-every K: NAME-epochNNN.pt every K epochs
if [ "$cmd" = finetune ] && [ -n "$every" ]; then
  e=$every; while [ "$e" -le "$epochs" ]; do touch "${model%.pt}-epoch$(printf %03d "$e").pt"; e=$((e + every)); done
fi
"""

STEPS = ["synth", "extract-radiomics", "init-encoder", "finetune", "embed", "fit-share", "decode", "compare",
         "stats", "correlate", "correlate-summary", "cka", "probe", "report"]


def _make(tmp_path, *extra):
    env = dict(os.environ, FAKE_LOG=str(tmp_path / "log"))
    # make cannot hold spaces in target names: OUT is a plain path here (documented)
    r = subprocess.run(["make", "-C", str(REPO / "examples"), "-j2", f"RADLENS={tmp_path / 'radlens'}",
                        f"OUT={tmp_path / 'work'}", f"PARAMS={tmp_path / 'params.yaml'}", *extra], capture_output=True, text=True, encoding="utf-8", errors="replace", env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (tmp_path / "log").read_text().split() if (tmp_path / "log").exists() else []
    (tmp_path / "log").unlink(missing_ok=True)
    return r, log


@pytest.fixture
def fake(tmp_path):
    if shutil.which("make") is None:
        pytest.fail("GNU make not installed (apt-get install make; .ci/run does)")
    p = tmp_path / "radlens"
    p.write_text(FAKE)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "params.yaml").write_text("imageType: {Original: {}}\n")
    return tmp_path


def test_every_step_runs_once_then_nothing_is_stale(fake):
    r, log = _make(fake)
    assert set(log) == set(STEPS)
    # 3 epochs saved by the volume fine-tune make the trajectory: 3 more embeds and decodes;
    # risk is fine-tuned twice (the second seed is its null panel)
    assert log.count("finetune") == 3 and log.count("embed") == 7 and log.count("decode") == 7
    assert log.count("report") == 3 and log.count("correlate") == 3 and log.count("compare") == 3
    reports = [ln for ln in r.stdout.splitlines() if ln.startswith("/") and ln.endswith(".html")]
    assert len(reports) == 3 and all(os.path.isabs(p) and os.path.exists(p) for p in reports)
    assert any(p.endswith("report-trajectory.html") for p in reports)
    lines = [ln for ln in r.stdout.splitlines() if not ln.startswith("make")]
    assert lines[-1].endswith(".html")  # the last line is a report's path
    _, log = _make(fake)
    assert log == []


def test_an_edit_reruns_only_what_depends_on_it(fake):
    _make(fake)
    _, log = _make(fake, "EPOCHS=2")
    assert "synth" not in log and "extract-radiomics" not in log and "init-encoder" not in log
    assert log.count("finetune") == 3 and "report" in log
    assert log.count("embed") == 5  # the fine-tuned ones (3 runs, 2 saved epochs); the pre-trained one stays
    _, log = _make(fake, "EPOCHS=2", "NULL_DELTA=0.07")
    assert sorted(set(log)) == ["compare", "report", "stats"]
    _, log = _make(fake, "EPOCHS=2", "NULL_DELTA=0.07", "CASES=30")
    assert set(log) == set(STEPS) - {"init-encoder"}  # a new cohort, the same random encoder
