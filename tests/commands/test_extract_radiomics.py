"""`radlens extract-radiomics` on small synthetic cohorts: output layout, values against
PyRadiomics called directly, -j 2 == -j 1, piping, spaces, cache, failures, exit codes."""

import csv
import json
import os
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens_cli.io.tables import read_table
from tests.radiomics.conftest import PAPER, QUICK, cohort, make_cohort, tiny_params, write_volume  # noqa: F401 (fixtures)

MODS = "t2,adc"


def run(cli, manifest, out, params, *extra, mods=MODS, mask="zones"):
    return cli("extract-radiomics", manifest, "--modalities", mods, "--mask", mask, "--params", params,
               "-o", out, *extra)


def attrs(path):
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def test_default_run_layout_and_values(cli, cohort, tiny_params, tmp_path):
    out = tmp_path / "rad.h5"
    r = run(cli, cohort, out, tiny_params)
    assert r.exit_code == 0, r
    assert r.stdout == ""  # stdout carries data only
    t = read_table(str(out))
    man = pd.read_csv(cohort, dtype=str)
    assert list(t.case_id) == list(man.case_id)
    assert list(t.split) == list(man.split)  # copied from the manifest
    n_per = len(t.columns) // 2
    assert all(c.startswith("t2/") for c in t.columns[:n_per]) and all(c.startswith("adc/") for c in t.columns[n_per:])
    assert "t2/original_firstorder_Mean" in t.columns and "adc/original_glcm_Correlation" in t.columns
    assert not any("diagnostics" in c for c in t.columns)
    assert list(t.column_meta["modality"][:2]) == ["t2", "t2"]
    assert set(t.column_meta["family"]) == {"firstorder", "glcm", "glszm"}
    assert set(t.column_meta["image_type"]) == {"original"}
    assert np.isfinite(t.values).all()
    # diagnostics are kept in the file, not in values
    with h5py.File(out, "r") as f:
        diag = json.loads(f["diagnostics"][0])
    assert set(diag) == {"t2", "adc"} and "diagnostics_Mask-original_VoxelNum" in diag["t2"]
    a = attrs(out)
    assert a["radlens_schema"] == "case-table/1" and json.loads(a["failures"]) == []
    params = json.loads(a["params"])
    assert params["extraction"]["resampling"]["mode"] == "mask-to-image"
    assert params["extraction"]["modalities"] == ["t2", "adc"]

    # independent: PyRadiomics itself on case02's adc image with the binarised zones mask
    from radiomics import featureextractor

    folder = cohort.parent
    img = sitk.ReadImage(str(folder / "case02_adc.nrrd"))
    lab = sitk.ReadImage(str(folder / "case02_zones.nrrd"))
    binary = sitk.Cast(lab > 0, sitk.sitkUInt8)
    with warnings.catch_warnings():  # pykwalify's load_module() of PyRadiomics' schema hooks
        warnings.simplefilter("ignore", DeprecationWarning)
        ref = featureextractor.RadiomicsFeatureExtractor(str(tiny_params)).execute(img, binary)
    row = list(t.case_id).index("case02")
    for key, val in ref.items():
        if key.startswith("diagnostics_"):
            continue
        assert t.values[row, t.columns.index(f"adc/{key}")] == float(val), key


def test_jobs_2_equals_jobs_1_byte_for_byte(cli, cohort, tiny_params, tmp_path):
    r1 = run(cli, cohort, tmp_path / "j1.h5", tiny_params, "-j", "1")
    r2 = run(cli, cohort, tmp_path / "j2.h5", tiny_params, "-j", "2")
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1, r2)
    a, b = read_table(str(tmp_path / "j1.h5")), read_table(str(tmp_path / "j2.h5"))
    assert a.n_cases == 5 and len({c.split("/")[0] for c in a.columns}) == 2
    assert a.columns == b.columns and list(a.case_id) == list(b.case_id)
    assert a.values.tobytes() == b.values.tobytes()


def test_pipe_to_stdout_and_path_with_spaces(cli, spaced_tmp, tiny_params):
    manifest = make_cohort(spaced_tmp / "my cohort", n_cases=2, name="the cohort.csv")
    r = run(cli, manifest, "-", tiny_params)
    assert r.exit_code == 0, r
    assert r.stdout_bytes[:8] == b"\x89HDF\r\n\x1a\n"
    # the piped table feeds the next command (`radlens merge - -o ...`)
    out = spaced_tmp / "out dir.h5"
    r2 = cli("merge", "-", "-o", out, input=r.stdout_bytes)
    assert r2.exit_code == 0, r2
    assert read_table(str(out)).n_cases == 2


def test_csv_output_and_derived_split_seed(cli, tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=3, split=False)
    outs = []
    for name, seed in (("a.csv", "3"), ("b.csv", "3")):
        r = run(cli, manifest, tmp_path / name, tiny_params, "--seed", seed)
        assert r.exit_code == 0, r
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1]  # same seed, same bytes
    df = pd.read_csv(tmp_path / "a.csv")
    assert list(df.columns[:2]) == ["case_id", "split"] and set(df.split) <= {"train", "val", "test"}


def test_cache_resumes_and_never_caches_failures(cli, cohort, tiny_params, tmp_path):
    cache = tmp_path / "cache"
    folder = cohort.parent
    os.rename(folder / "case03_adc.nrrd", folder / "moved.nrrd")
    r = run(cli, cohort, tmp_path / "a.h5", tiny_params, "--cache-dir", cache, "--keep-going")
    assert r.exit_code == 0 and "warning: 1 case(s) failed and are left out; 4 written" in r.stderr, r
    files = sorted(os.listdir(cache))
    assert len(files) == 9 and not any("case03.adc" in f for f in files)  # the failure is not cached
    os.rename(folder / "moved.nrrd", folder / "case03_adc.nrrd")
    r = run(cli, cohort, tmp_path / "b.h5", tiny_params, "--cache-dir", cache)
    assert r.exit_code == 0, r
    assert "9 of 10 task(s) taken from the cache" in r.stderr
    r = run(cli, cohort, tmp_path / "c.h5", tiny_params)  # no cache at all
    b, c = read_table(str(tmp_path / "b.h5")), read_table(str(tmp_path / "c.h5"))
    assert b.values.tobytes() == c.values.tobytes()
    # a changed image changes the key: recomputed, not served stale
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "case01_t2.nrrd")))
    write_volume(folder / "case01_t2.nrrd", (arr * 2).astype(np.float32))
    r = run(cli, cohort, tmp_path / "d.h5", tiny_params, "--cache-dir", cache)
    assert "9 of 10 task(s) taken from the cache" in r.stderr


def test_failure_reported_listed_and_left_out(cli, cohort, tiny_params, tmp_path):
    folder = cohort.parent
    os.remove(folder / "case01_t2.nrrd")
    (folder / "case04_adc.nrrd").write_bytes(b"this is not an image")
    out, fails = tmp_path / "rad.h5", tmp_path / "failures.csv"
    r = run(cli, cohort, out, tiny_params, "--failures", fails)
    assert r.exit_code == 1, r
    lines = [ln for ln in r.stderr.splitlines() if "failed:" in ln]
    assert len(lines) == 2
    miss = next(ln for ln in lines if "case01" in ln)
    assert "modality t2" in miss and str(folder / "case01_t2.nrrd") in miss and "image file not found" in miss
    bad = next(ln for ln in lines if "case04" in ln)
    assert "modality adc" in bad and "cannot read image" in bad
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("radlens extract-radiomics: error: 2 of 5 case(s) failed (case01, case04")
    assert "not written" in last and "--keep-going" in last
    assert not out.exists()  # make-safe: a failed run leaves no complete-looking output
    assert fails.exists()
    r = run(cli, cohort, out, tiny_params, "--keep-going", "--failures", fails, "-f")
    assert r.exit_code == 0, r
    assert "warning: 2 case(s) failed and are left out; 3 written" in r.stderr
    t = read_table(str(out))  # the others are written, failed cases are not rows of NaN
    assert list(t.case_id) == ["case00", "case02", "case03"] and np.isfinite(t.values).all()
    recorded = json.loads(attrs(out)["failures"])
    assert {(f["case_id"], f["modality"]) for f in recorded} == {("case01", "t2"), ("case04", "adc")}
    with open(fails, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(x["case_id"], x["modality"], x["status"]) for x in rows} == {("case01", "t2", "failed"),
                                                                         ("case04", "adc", "failed")}
    assert all(x["reason"] and x["path"] for x in rows)


def test_keep_going_without_failures_exits_0(cli, tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=2)
    r = run(cli, manifest, tmp_path / "o.h5", tiny_params, "--keep-going")
    assert r.exit_code == 0, r
    # nothing failed: a whole table, no failures recorded, no warning about left-out cases
    t = read_table(str(tmp_path / "o.h5"))
    assert list(t.case_id) == ["case00", "case01"] and np.isfinite(t.values).all()
    assert json.loads(attrs(tmp_path / "o.h5").get("failures", "[]")) == []
    assert "failed" not in r.stderr


def test_label_selection_and_voxel_counts(cli, tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=2)
    lab = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "c" / "case00_zones.nrrd")))
    counts = {}
    for spec in ("zones:1", "zones:2", "zones:1+2"):
        out = tmp_path / f"{spec.replace(':', '_').replace('+', '_')}.h5"
        r = run(cli, manifest, out, tiny_params, mask=spec, mods="t2")
        assert r.exit_code == 0, r
        with h5py.File(out, "r") as f:
            counts[spec] = int(json.loads(f["diagnostics"][0])["t2"]["diagnostics_Mask-original_VoxelNum"])
    assert counts["zones:1"] == int((lab == 1).sum()) and counts["zones:2"] == int((lab == 2).sum())
    assert counts["zones:1+2"] == int((lab > 0).sum())


def test_paper_params_give_837_features(cli, tmp_path):
    """On breast1, the smallest of PyRadiomics' real cases (about a second with wavelets at
    0.5 mm)."""
    from tests.conftest import PYRADIOMICS_CASES as cases

    manifest = tmp_path / "m.csv"
    manifest.write_text(f"case_id,mr,roi\nbreast1,{cases}/breast1_image.nrrd,{cases}/breast1_label.nrrd\n")
    r = run(cli, manifest, tmp_path / "p.h5", PAPER, mods="mr", mask="roi")
    assert r.exit_code == 0, r
    t = read_table(str(tmp_path / "p.h5"))
    assert len(t.columns) == 837 and all(c.startswith("mr/") for c in t.columns)
    assert len(set(t.column_meta["image_type"])) == 9  # original + 8 wavelet decompositions
    assert set(t.column_meta["family"]) == {"firstorder", "glcm", "glszm", "glrlm", "ngtdm", "gldm"}


def test_quick_params_valid(tmp_path):
    from radlens_cli.radiomics.params import load_params

    p = load_params(str(QUICK))
    assert p["imageType"] == {"Original": {}} and p["setting"]["label"] == 1


def test_sharding_is_explicit_and_follows_step_arrays(cli, tmp_path, tiny_params, monkeypatch):
    manifest = make_cohort(tmp_path / "c", n_cases=4)
    # task 3 of `--array=1-5:2` (tasks 1, 3, 5): part 1 of 3
    for k, v in {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1",
                 "SLURM_ARRAY_TASK_MAX": "5", "SLURM_ARRAY_TASK_STEP": "2"}.items():
        monkeypatch.setenv(k, v)
    r = run(cli, manifest, tmp_path / "all.h5", tiny_params, mods="t2")  # an array task is not a shard
    assert r.exit_code == 0, r
    assert "not sharding" in r.stderr and read_table(str(tmp_path / "all.h5")).n_cases == 4
    assert "radlens_part" not in attrs(tmp_path / "all.h5")
    r = run(cli, manifest, tmp_path / "p.h5", tiny_params, "--parts", "slurm", mods="t2")
    assert r.exit_code == 0, r
    assert "part 1 of 3: 1 case(s)" in r.stderr
    assert json.loads(attrs(tmp_path / "p.h5")["radlens_part"]) == {"part_id": 1, "num_parts": 3}
    assert list(read_table(str(tmp_path / "p.h5")).case_id) == ["case01"]
    r = run(cli, manifest, tmp_path / "q.h5", tiny_params, "--parts", "slurm", "--part-id", "0", mods="t2")
    assert r.exit_code == 2 and "not both" in r.stderr
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")  # off the 1-5:2 range
    r = run(cli, manifest, tmp_path / "q.h5", tiny_params, "--parts", "slurm", mods="t2")
    assert r.exit_code == 2 and "array task 4" in r.stderr


@pytest.mark.parametrize("policy,code", [("skip", 0), ("fail", 1)])
def test_empty_mask_policy(cli, tmp_path, tiny_params, policy, code):
    manifest = make_cohort(tmp_path / "c", n_cases=3)
    write_volume(tmp_path / "c" / "case01_zones.nrrd", np.zeros((12, 24, 24), np.uint8))
    r = run(cli, manifest, tmp_path / "o.h5", tiny_params, "--empty-mask", policy, "--failures", tmp_path / "f.csv")
    assert r.exit_code == code, r
    assert "case case01" in r.stderr and "mask is empty" in r.stderr
    if policy == "fail":  # a failed case: no output
        assert not (tmp_path / "o.h5").exists()
    else:  # skipping was asked for: not a failure
        assert list(read_table(str(tmp_path / "o.h5")).case_id) == ["case00", "case02"]
    rows = list(csv.DictReader(open(tmp_path / "f.csv", newline="")))
    assert {x["status"] for x in rows} == {"skipped" if policy == "skip" else "failed"}
    if policy == "skip":
        assert "skipped for an empty mask: case01" in r.stderr
        assert json.loads(attrs(tmp_path / "o.h5")["skipped"])[0]["case_id"] == "case01"
