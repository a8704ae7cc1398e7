"""`radlens embed` with failing cases: reported one line each, the batch goes on, the good cases
are written only with --keep-going (exit 0, failures listed), else exit 1 and no output."""

import csv
import json
import os
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from radlens_cli.io.tables import read_table
from tests.encoders.conftest import SMALL, atto3, write_cohort  # noqa: F401 (fixtures)

MODS = ["--modalities", "t2,dwi,adc", "--mask", "gland"]
GOOD = ["p00", "p02", "p04"]


@pytest.fixture(scope="module")
def bad_cohort(tmp_path_factory):
    """Five cases: p01's ADC is missing, p03's mask is empty. Also the 3 good cases alone,
    and a manifest where every case is bad."""
    import SimpleITK as sitk

    d = tmp_path_factory.mktemp("bad cohort")
    path = write_cohort(str(d), n=5)
    shutil.move(str(d / "p01_adc.nii.gz"), str(d / "saved_p01_adc.nii.gz"))
    g = sitk.ReadImage(str(d / "p03_gland.nii.gz"))
    empty = sitk.Image(g.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(g)
    sitk.WriteImage(empty, str(d / "p03_empty.nii.gz"))
    df = pd.read_csv(path)
    df.loc[3, "gland"] = "p03_empty.nii.gz"
    df.to_csv(path, index=False)
    df[df.case_id.isin(GOOD)].to_csv(d / "good.csv", index=False)
    df.iloc[[1, 3]].to_csv(d / "all_bad.csv", index=False)
    return {"dir": d, "all": path, "good": str(d / "good.csv"), "all_bad": str(d / "all_bad.csv")}


def embed(cli, manifest, enc, out, *extra):
    return cli("embed", manifest, *MODS, "--encoder", enc, "-o", out, *SMALL, *extra)


def failure_lines(r):
    return [ln for ln in r.stderr.splitlines() if ln.startswith("radlens embed: failed: ")]


def check_failures_named(r):
    lines = failure_lines(r)
    assert len(lines) == 2, r.stderr
    assert "case p01, adc:" in lines[0] and "p01_adc.nii.gz" in lines[0] and "file not found" in lines[0]
    assert "case p03, mask gland:" in lines[1] and "p03_empty.nii.gz" in lines[1] and "empty" in lines[1]
    assert "Traceback" not in r.stderr


def test_failing_cases_are_listed_and_the_rest_written(cli, bad_cohort, atto3, tmp_path):
    out, fails = tmp_path / "emb.h5", tmp_path / "failures.csv"
    r = embed(cli, bad_cohort["all"], atto3, out, "--failures", fails)
    assert r.exit_code == 1, r
    check_failures_named(r)
    errors = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and "2 of 5 case(s) failed (p01, p03" in errors[0], r.stderr
    assert not out.exists() and fails.exists()
    r = embed(cli, bad_cohort["all"], atto3, out, "--failures", fails, "--keep-going", "-f")
    assert r.exit_code == 0 and "warning: 2 case(s) failed and are left out; 3 written" in r.stderr, r
    t = read_table(str(out))
    assert list(t.case_id) == GOOD and list(t.split) == ["train", "test", "train"]
    assert np.isfinite(t.values).all()
    # the good cases' embeddings are those of a run over them alone
    r = embed(cli, bad_cohort["good"], atto3, tmp_path / "good.h5")
    assert r.exit_code == 0, r
    ref = read_table(str(tmp_path / "good.h5"))
    assert list(ref.case_id) == GOOD
    np.testing.assert_allclose(t.values, ref.values, rtol=0, atol=1e-5)
    with h5py.File(out) as f:
        attr = json.loads(f.attrs["failures"])
    with open(fails, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for recs in (attr, rows):
        assert [(x["case_id"], x["modality"], os.path.basename(x["path"]), x["status"]) for x in recs] == [
            ("p01", "adc", "p01_adc.nii.gz", "failed"), ("p03", "mask gland", "p03_empty.nii.gz", "failed")]
        assert "file not found" in recs[0]["reason"] and "empty" in recs[1]["reason"]

    # -j 2: workers report the failures, same table
    r = embed(cli, bad_cohort["all"], atto3, tmp_path / "j2.h5", "-j", "2", "--keep-going")
    assert r.exit_code == 0, r
    check_failures_named(r)
    j2 = read_table(str(tmp_path / "j2.h5"))
    assert list(j2.case_id) == GOOD and np.array_equal(j2.values, t.values)

    # no case succeeds: one error line, nothing written (the --failures CSV lists them)
    none, nf = tmp_path / "none.h5", tmp_path / "none.csv"
    r = embed(cli, bad_cohort["all_bad"], atto3, none, "--failures", nf)
    assert r.exit_code == 1, r
    check_failures_named(r)
    errors = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert len(errors) == 1 and "no case succeeded" in errors[0], r.stderr
    assert not none.exists()
    assert [row["case_id"] for row in csv.DictReader(open(nf, newline=""))] == ["p01", "p03"]


def test_the_cache_never_keeps_a_failure(cli, bad_cohort, atto3, tmp_path):
    """A rerun after fixing the bad case embeds it: neither its volume nor its batch was cached."""
    d = tmp_path / "c"
    shutil.copytree(bad_cohort["dir"], d)
    cache = tmp_path / "cache"
    r = embed(cli, str(d / "cohort.csv"), atto3, tmp_path / "a.h5", "--cache-dir", cache, "--keep-going")
    assert r.exit_code == 0 and len(failure_lines(r)) == 2, r
    first = read_table(str(tmp_path / "a.h5"))
    shutil.copy(d / "saved_p01_adc.nii.gz", d / "p01_adc.nii.gz")
    r = embed(cli, str(d / "cohort.csv"), atto3, tmp_path / "b.h5", "--cache-dir", cache, "--keep-going")
    assert r.exit_code == 0 and len(failure_lines(r)) == 1 and "case p03" in failure_lines(r)[0], r
    second = read_table(str(tmp_path / "b.h5"))
    assert list(second.case_id) == ["p00", "p01", "p02", "p04"]
    keep = [list(second.case_id).index(c) for c in GOOD]
    np.testing.assert_allclose(second.values[keep], first.values, rtol=0, atol=1e-5)
