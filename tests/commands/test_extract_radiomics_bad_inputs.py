"""Bad inputs to extract-radiomics and merge: exit code, one line naming the culprit, no
traceback, no output left behind."""

import os

import numpy as np
import pandas as pd
import pytest

from tests.radiomics.conftest import make_cohort, tiny_params, write_volume  # noqa: F401 (fixtures)


@pytest.fixture
def setup(tmp_path, tiny_params):
    manifest = make_cohort(tmp_path / "c", n_cases=2)
    return tmp_path, manifest, tiny_params


def extract(cli, manifest, out, params, *extra, mods="t2,adc", mask="zones"):
    return cli("extract-radiomics", manifest, "--modalities", mods, "--mask", mask, "--params", params,
               "-o", out, *extra)


def one_line(r, code, *needles):
    assert r.exit_code == code, r
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("radlens ") and ": error: " in lines[0], lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])


def task_failure(r, code, *needles):
    """A per-(case, modality) failure: its own line, then the summary error line."""
    assert r.exit_code == code, r
    assert "Traceback" not in r.stderr
    failed = [ln for ln in r.stderr.splitlines() if "failed:" in ln]
    assert len(failed) == 1, r.stderr
    for n in needles:
        assert n in failed[0], (n, failed[0])


def test_missing_image(cli, setup):
    tmp, manifest, params = setup
    os.remove(tmp / "c" / "case00_adc.nrrd")
    r = extract(cli, manifest, tmp / "o.h5", params)
    task_failure(r, 1, "case case00", "modality adc", "case00_adc.nrrd", "image file not found")


def test_corrupt_image(cli, setup):
    tmp, manifest, params = setup
    (tmp / "c" / "case01_t2.nrrd").write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 9 9\n\ngarbage")
    r = extract(cli, manifest, tmp / "o.h5", params)
    task_failure(r, 1, "case case01", "modality t2", "case01_t2.nrrd", "cannot read image")


def test_empty_mask_fails_by_default(cli, setup):
    tmp, manifest, params = setup
    write_volume(tmp / "c" / "case01_zones.nrrd", np.zeros((12, 24, 24), np.uint8))
    r = extract(cli, manifest, tmp / "o.h5", params, mods="t2")
    task_failure(r, 1, "case case01", "case01_zones.nrrd", "mask is empty")


def test_absent_label(cli, setup):
    tmp, manifest, params = setup
    r = extract(cli, manifest, tmp / "o.h5", params, mods="t2", mask="zones:3")
    assert r.exit_code == 1 and "label(s) 3 absent" in r.stderr and "labels present: [1, 2]" in r.stderr
    assert "no case succeeded" in r.stderr and not (tmp / "o.h5").exists()


def test_geometry_mismatch_without_resampling(cli, setup):
    tmp, manifest, params = setup
    write_volume(tmp / "c" / "case00_t2.nrrd", np.ones((12, 24, 24), np.float32), spacing=(1.0, 1.0, 3.0))
    r = extract(cli, manifest, tmp / "o.h5", params, "--no-resample-mask", mods="t2")
    task_failure(r, 1, "case case00", "geometry mismatch", "spacing [1.0, 1.0, 3.0] vs [1.0, 1.0, 2.0]")


def test_duplicate_case_id(cli, setup):
    tmp, manifest, params = setup
    df = pd.read_csv(manifest)
    pd.concat([df, df.iloc[[0]]]).to_csv(tmp / "dup.csv", index=False)
    one_line(extract(cli, tmp / "dup.csv", tmp / "o.h5", params), 1, "duplicate case_id case00", "dup.csv")
    assert not (tmp / "o.h5").exists()


def test_manifest_without_case_id(cli, setup):
    tmp, manifest, params = setup
    pd.read_csv(manifest).rename(columns={"case_id": "patient"}).to_csv(tmp / "m.csv", index=False)
    one_line(extract(cli, tmp / "m.csv", tmp / "o.h5", params), 1, "no `case_id` column")


@pytest.mark.parametrize("opt,value,needle", [
    ("--modalities", "t2,flair", "unknown modality column(s) flair"),
    ("--mask", "gland", "unknown mask column(s) gland"),
    ("--reference-modality", "dwi", "unknown reference modality column(s) dwi"),
])
def test_unknown_column(cli, setup, opt, value, needle):
    tmp, manifest, params = setup
    args = {"--modalities": "t2,adc", "--mask": "zones"}
    extra = []
    if opt in args:
        args[opt] = value
    else:
        extra = [opt, value]
    r = extract(cli, manifest, tmp / "o.h5", params, *extra, mods=args["--modalities"], mask=args["--mask"])
    one_line(r, 2, needle)


@pytest.mark.parametrize("text,needle", [
    ("setting:\n  binWidht: 5\n", "Key 'binWidht' was not defined"),
    ("setting:\n  binWidth: -2\n", "/setting/binWidth"),
    ("featureClass:\n  glcmm: []\n", "Feature Class glcmm is not recognized"),
    ("imageType:\n  Wavelett: {}\n", "Image Type Wavelett is not recognized"),
    ("setting: [unclosed\n", "not valid YAML"),
    ("setting:\n  label: 2\n", "--mask COLUMN:2"),
])
def test_params_rejected(cli, setup, text, needle):
    tmp, manifest, _ = setup
    bad = tmp / "bad.yaml"
    bad.write_text(text)
    r = extract(cli, manifest, tmp / "o.h5", bad)
    one_line(r, 1, "bad.yaml", needle)
    if "YAML" not in needle and "--mask" not in needle:
        assert "rejected by PyRadiomics' parameter schema" in r.stderr
    assert not (tmp / "o.h5").exists()


def test_part_id_out_of_range(cli, setup):
    tmp, manifest, params = setup
    one_line(extract(cli, manifest, tmp / "o.h5", params, "--part-id", "3", "--num-parts", "3"), 2,
             "--part-id 3 is out of range for --num-parts 3")
    one_line(extract(cli, manifest, tmp / "o.h5", params, "--part-id", "1"), 2, "together")


def test_output_exists_without_force(cli, setup):
    tmp, manifest, params = setup
    (tmp / "o.h5").write_bytes(b"precious")
    one_line(extract(cli, manifest, tmp / "o.h5", params), 1, "output exists", "--force")
    assert (tmp / "o.h5").read_bytes() == b"precious"
    (tmp / "f.csv").write_text("keep")
    one_line(extract(cli, manifest, tmp / "p.h5", params, "--failures", tmp / "f.csv"), 1, "f.csv")


def test_output_folder_missing(cli, setup):
    tmp, manifest, params = setup
    one_line(extract(cli, manifest, tmp / "nowhere" / "o.h5", params), 1, "output folder does not exist")


def test_bad_option_values(cli, setup):
    tmp, manifest, params = setup
    one_line(extract(cli, manifest, tmp / "o.h5", params, "--empty-mask", "ignore"), 2, "skip or fail")
    one_line(extract(cli, manifest, tmp / "o.h5", params, mask="zones:0"), 2, "must be > 0")


def test_merge_bad_inputs(cli, tmp_path):
    (tmp_path / "text.h5").write_text("not hdf5")
    one_line(cli("merge", tmp_path / "text.h5", "-o", tmp_path / "o.h5"), 1, "text.h5")
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.arange(3)
    one_line(cli("merge", tmp_path / "other.h5", "-o", tmp_path / "o.h5"), 1, "other.h5", "not a radlens file")
    one_line(cli("merge", tmp_path / "missing.h5", "-o", tmp_path / "o.h5"), 1, "missing.h5")
    assert not (tmp_path / "o.h5").exists()


def test_cache_dir_is_a_file(cli, setup):
    tmp, manifest, params = setup
    (tmp / "cache").write_text("x")
    one_line(extract(cli, manifest, tmp / "o.h5", params, "--cache-dir", tmp / "cache"), 1,
             "--cache-dir is a file")


def test_damaged_cache_file_is_recomputed(cli, setup):
    tmp, manifest, params = setup
    r = extract(cli, manifest, tmp / "a.h5", params, "--cache-dir", tmp / "cache", mods="t2")
    assert r.exit_code == 0, r
    victim = sorted((tmp / "cache").iterdir())[0]
    victim.write_text('{"key": "truncated')
    r = extract(cli, manifest, tmp / "b.h5", params, "--cache-dir", tmp / "cache", mods="t2")
    assert r.exit_code == 0, r
    assert "1 of 2 task(s) taken from the cache" in r.stderr
    from radlens_cli.io.tables import read_table

    assert read_table(str(tmp / "a.h5")).values.tobytes() == read_table(str(tmp / "b.h5")).values.tobytes()
