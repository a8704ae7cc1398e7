"""`radlens perturb` against the STYLE conventions (tests/commands/harness.py)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens_cli.synth import phantom
from tests.commands import harness as h


def inputs(folder):
    phantom.write_cohort(str(folder / "cohort"), cases=2, seed=0, size=(16, 16, 4))
    return {"manifest": folder / "cohort" / "cohort.csv"}


ARGS = ["--modalities", "t2,adc", "--mask", "gland", "--masks", "zones", "--replicates", "2"]
SPEC = h.Spec("perturb", inputs, lambda i, out, seed: [i["manifest"], "-o", out, *ARGS, "--seed", seed],
              read=h.read_folder, output="folder", out_name="pert", seeded=True)


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    man = pd.read_csv(tmp_path / "pert" / "cohort.csv")
    src = pd.read_csv(tmp_path / "cohort" / "cohort.csv")
    assert man.case_id.tolist() == ["case000_r1", "case000_r2", "case001_r1", "case001_r2"]
    assert man.subject.tolist() == ["case000", "case000", "case001", "case001"]
    assert (man.split.to_numpy() == np.repeat(src.split.to_numpy(), 2)).all()
    for col in ("t2", "adc", "gland", "zones"):  # every path the manifest names was written
        assert all(p in out.data for p in man[col]), col
    assert "dwi" not in man.columns and "lesion" not in man.columns  # not asked for: left out, with a warning
    assert (man.rotation_deg.abs() <= 10).all() and (man.rotation_deg != 0).all()
    assert man.contour_voxels.isin([-1, 1]).all()
    assert (man.noise_added_sd_t2 == man.noise_sd_t2).all() and (man.noise_sd_t2 > 0).all()
    assert out.params["perturbations"] == ["rotation", "translation", "noise", "contour"]
    assert out.params["rotation"] == 10.0 and out.params["translation"] == 0.5 and out.params["noise"] == 1.0
    assert out.params["negative_control"] is None and out.params["replicates"] == 2
    assert out.params["keep_histogram"] is True and man.histogram_matched.all()


@pytest.mark.parametrize("flag,matched", [([], True), (["--keep-histogram"], True),
                                          (["--resampled-histogram"], False)])
def test_histogram_kept_unless_asked(cli, tmp_path, flag, matched):
    """Rotation and translation only: by default each replicate image holds its original's
    values exactly (recorded histogram_matched, keep_histogram); --resampled-histogram
    writes the B-spline's values (0.4.0), whose histogram differs."""
    files = inputs(tmp_path)
    r = cli("perturb", files["manifest"], "-o", tmp_path / "p", "--modalities", "t2,adc", "--mask", "gland",
            "--perturbations", "rotation,translation", "--replicates", "2", *flag)
    assert r.exit_code == 0, r
    man = pd.read_csv(tmp_path / "p" / "cohort.csv")
    assert man.histogram_matched.tolist() == [matched] * 4
    assert h.read_folder(tmp_path / "p").params["keep_histogram"] is matched
    src = pd.read_csv(files["manifest"]).set_index("case_id")
    for _, row in man.iterrows():
        for col in ("t2", "adc"):
            orig = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cohort" / src.loc[row.subject, col])))
            rep = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "p" / row[col])))
            assert not np.array_equal(rep, orig)  # moved
            assert np.array_equal(np.sort(rep, axis=None), np.sort(orig, axis=None)) is matched, (row.case_id, col)


@pytest.mark.parametrize("flag", ["--keep-histogram", "--resampled-histogram"])
def test_histogram_choice_needs_a_resampling_perturbation(cli, tmp_path, flag):
    """Either histogram flag without rotation or translation would do nothing: refused, naming
    both options, nothing written; without the flag the same run goes ahead."""
    files = inputs(tmp_path)
    args = ["perturb", files["manifest"], "-o", tmp_path / "p", "--modalities", "t2", "--mask", "gland",
            "--perturbations", "noise,contour", "--replicates", "1"]
    r = cli(*args, flag)
    assert r.exit_code == 2 and not (tmp_path / "p").exists(), r
    assert ("the histogram choice (--keep-histogram) applies to a rotation or translation, and neither is "
            "among --perturbations (noise, contour)") in r.stderr
    r = cli(*args)
    assert r.exit_code == 0, r
    assert pd.read_csv(tmp_path / "p" / "cohort.csv").histogram_matched.tolist() == [False, False]


def test_include_original_and_negative_control(cli, tmp_path):
    files = inputs(tmp_path)
    r = cli("perturb", files["manifest"], "-o", tmp_path / "ctrl", "--modalities", "t2", "--mask", "gland",
            "--negative-control", "shuffled-roi", "--replicates", "1", "--include-original")
    assert r.exit_code == 0, r
    man = pd.read_csv(tmp_path / "ctrl" / "cohort.csv")
    assert man.case_id.tolist() == ["case000_r0", "case000_r1", "case001_r0", "case001_r1"]
    assert man.negative_control.fillna("").tolist() == ["", "shuffled-roi", "", "shuffled-roi"]
    assert (man.rotation_deg == 0).all() and (man.contour_voxels == 0).all()  # a control alone by default
    src = pd.read_csv(files["manifest"]).set_index("case_id")
    orig = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cohort" / src.loc["case000", "t2"])))
    r0 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ctrl" / man.t2[0])))
    r1 = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ctrl" / man.t2[1])))
    roi = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "cohort" / src.loc["case000", "gland"]))) > 0
    assert np.array_equal(r0, orig)
    assert np.array_equal(np.sort(r1[roi]), np.sort(orig[roi])) and not np.array_equal(r1[roi], orig[roi])
    assert np.array_equal(r1[~roi], orig[~roi])


def test_pipe_is_refused(cli, tmp_path):
    h.pipe_refused(cli, SPEC, tmp_path, "a cohort is a folder")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_seed_same_bytes_and_parameters(cli, tmp_path):
    a, _, c = h.determinism(cli, SPEC, tmp_path)
    assert a.data["cohort.csv"] != c.data["cohort.csv"]  # another seed, other draws
    assert a.data["case000_r1/t2.nii.gz"] != c.data["case000_r1/t2.nii.gz"]


def test_workers_write_the_same_files(cli, tmp_path, monkeypatch):
    """-j 2 writes the same bytes as -j 1 (draws are seeded per case and replicate), and a
    worker killed while holding a case is replaced and the case retried."""
    i = inputs(tmp_path)
    assert cli("perturb", i["manifest"], "-o", tmp_path / "one", *ARGS, "-j", "1").exit_code == 0
    monkeypatch.setenv("RADLENS_TEST_KILL_WORKER", "case001")
    monkeypatch.setenv("RADLENS_TEST_KILL_ONCE", str(tmp_path / "killed-once"))
    r = cli("perturb", i["manifest"], "-o", tmp_path / "two", *ARGS, "-j", "2")
    assert r.exit_code == 0, r
    assert (tmp_path / "killed-once").exists() and "holding case case001; retrying" in r.stderr
    one, two = h.read_folder(tmp_path / "one"), h.read_folder(tmp_path / "two")
    assert one.data == two.data  # every image, mask and the manifest, by sha256
    assert one.params == two.params  # -j is not a parameter of the result
    monkeypatch.delenv("RADLENS_TEST_KILL_WORKER")
    (tmp_path / "cohort" / "case001" / "adc.nii.gz").unlink()  # a failing case: the same one-line error
    errors = [cli("perturb", i["manifest"], "-o", tmp_path / f"bad{j}", *ARGS, "-j", j) for j in ("1", "2")]
    assert errors[0].exit_code == errors[1].exit_code == 1
    assert errors[0].stderr == errors[1].stderr and "case case001, adc: file not found" in errors[1].stderr


@pytest.mark.parametrize("args,code,needles", [
    (["{m}", "-o", "{out}", "--modalities", "t2", "--mask", "gland", "--negative-control", "scramble"], 2,
     ["--negative-control scramble"]),
    (["{m}", "-o", "{out}", "--modalities", "t2", "--mask", "gland", "--perturbations", "noise", "--rotation", "5"],
     2, ["--rotation"]),
    (["{m}", "-o", "{out}", "--modalities", "t2", "--mask", "gland", "--perturbations", "blur"], 2, ["blur"]),
    (["{m}", "-o", "{out}", "--modalities", "t9", "--mask", "gland"], 2, ["t9"]),
    (["{m}", "-o", "{out}", "--modalities", "t2", "--mask", "gland", "--noise", "-1"], 2, ["--noise"]),
    (["{m}", "-o", "{full}", "--modalities", "t2", "--mask", "gland"], 1, ["output folder is not empty"]),
    (["{m}", "-o", "{out}", "--modalities", "t2", "--mask", "gland", "--perturbations", "none"], 2,
     ["nothing to do"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = inputs(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    names = {"m": files["manifest"], "out": tmp_path / "new", "full": tmp_path / "full"}
    h.bad_input(cli, SPEC, tmp_path, [a.format(**names) for a in args], code, *needles)


def test_a_perturbed_manifest_is_refused(cli, tmp_path):
    files = inputs(tmp_path)
    assert cli("perturb", files["manifest"], "-o", tmp_path / "p1", *ARGS).exit_code == 0
    h.bad_input(cli, SPEC, tmp_path, [tmp_path / "p1" / "cohort.csv", "-o", tmp_path / "p2", *ARGS], 1,
                "`subject` column")
