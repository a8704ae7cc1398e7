"""The example Makefile pipeline, shrunken, through the real CLI: CI catches any broken link.

synth -> extract-radiomics -> init-encoder -> finetune -> embed x2 -> fit-share -> decode x2
-> compare, stats, correlate, correlate-summary, cka, probe -> report.
"""

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _make_args(out):
    return ["make", "-C", str(REPO / "examples"), f"OUT={out}", "TASKS=volume", "CASES=24", "EPOCHS=1",
            "SHARE_EPOCHS=30", "HIDDEN=16", "BOOTSTRAP=20", "PERMUTATIONS=20", "FOLDS=2", "TREES=10",
            "JOBS=2", f"RADLENS={sys.executable} -m radlens_cli"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    if shutil.which("make") is None:
        pytest.fail("GNU make not installed (apt-get install make; .ci/run does): the example pipeline needs it")
    out = tmp_path_factory.mktemp("pipeline") / "work"
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1", SOURCE_DATE_EPOCH="1700000000")
    r = subprocess.run(_make_args(out), env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=900)
    assert r.returncode == 0, f"make failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return out, r


def test_pipeline_produces_a_complete_report(pipeline):
    out, r = pipeline
    report = out / "report-volume.html"
    assert report.is_file()
    assert str(report) in r.stdout  # the last step names the report
    html = report.read_text(encoding="utf-8")
    for needle in ("Table 1", "<table", "data:image/png;base64,", "ΔI"):
        assert needle in html, f"report lacks {needle!r}"


def test_pipeline_outputs_are_consistent(pipeline):
    out, _ = pipeline
    delta = pd.read_csv(out / "delta-volume.csv")
    table = pd.read_csv(out / "table-volume.csv")
    rad = subprocess.run([sys.executable, "-m", "radlens_cli", "info", "--json", str(out / "radiomics.h5")],
                         capture_output=True, text=True, encoding="utf-8", errors="replace", env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert rad.returncode == 0
    # every decoded radiomic column appears once in the comparison, with finite ΔI
    assert delta["column"].is_unique and len(delta) > 0
    assert delta["delta_importance"].notna().all()
    assert (delta["delta_importance"] - (delta["importance_ft"] - delta["importance_pre"])).abs().max() < 1e-9
    assert set(table["group_by"]) >= {"family", "image_type", "modality"}


def test_rerun_is_a_no_op(pipeline):
    """Every target is a file with its variables stamped: a second `make` runs no radlens step."""
    out, _ = pipeline
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    r = subprocess.run(_make_args(out), env=env, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "-m radlens_cli" not in r.stdout, f"a rerun redid work:\n{r.stdout}"
