"""Real mpMRI as a scanner writes it: T2 as a DICOM series at 0.5x0.5x3 mm, ADC at 2x2x3 mm
on a smaller field of view, zone label maps drawn on the T2 grid."""

import json
import warnings

import h5py
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens_cli.io.tables import read_table
from tests.radiomics.conftest import make_scanner_case


@pytest.fixture(scope="module")
def scanner(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scanner")
    rows = []
    for cid in ("p1", "p2"):
        paths = make_scanner_case(folder / cid, lesion_voxels=1)
        rows.append({"case_id": cid, **paths})
    pd.DataFrame(rows).to_csv(folder / "cohort.csv", index=False)
    return folder


def _params(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("imageType:\n  Original: {}\nfeatureClass:\n  firstorder: []\n  glcm: []\n"
                 "setting:\n  binWidth: 25\n")
    return p


def _extract(image, mask, params):
    from radiomics import featureextractor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ex = featureextractor.RadiomicsFeatureExtractor(str(params))
    return {k: float(v) for k, v in ex.execute(image, mask).items() if not k.startswith("diagnostics_")}


def test_mask_onto_each_sequence_grid(cli, scanner, tmp_path):
    params = _params(tmp_path)
    out = tmp_path / "a.h5"
    r = cli("extract-radiomics", scanner / "cohort.csv", "--modalities", "t2,adc", "--mask", "zones:1+2",
            "--params", params, "-o", out)
    assert r.exit_code == 0, r
    t = read_table(str(out))
    with h5py.File(out, "r") as f:
        prov = json.loads(f.attrs["params"])
        diag = json.loads(f["diagnostics"][0])
    assert prov["extraction"]["resampling"]["mode"] == "mask-to-image"
    # the ADC features are computed on ADC's own 2x2x3 mm grid
    assert diag["adc"]["diagnostics_Image-original_Spacing"] == "(2.0, 2.0, 3.0)"
    assert diag["t2"]["diagnostics_Image-original_Spacing"] == "(0.5, 0.5, 3.0)"
    # independent: resample the zones by hand (nearest, physical space) and run PyRadiomics
    adc = sitk.ReadImage(str(scanner / "p1" / "adc.nii.gz"))
    zones = sitk.ReadImage(str(scanner / "p1" / "zones.nrrd"))
    on_adc = sitk.Resample(sitk.Cast(zones > 0, sitk.sitkUInt8), adc, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ref = _extract(adc, on_adc, params)
    for k, v in ref.items():
        assert t.values[0, t.columns.index(f"adc/{k}")] == v, k


def test_reference_modality_resamples_images_onto_t2(cli, scanner, tmp_path):
    params = _params(tmp_path)
    out = tmp_path / "b.h5"
    r = cli("extract-radiomics", scanner / "cohort.csv", "--modalities", "t2,adc", "--mask", "zones:1",
            "--reference-modality", "t2", "--params", params, "-o", out)
    assert r.exit_code == 0, r
    t = read_table(str(out))
    with h5py.File(out, "r") as f:
        prov = json.loads(f.attrs["params"])
        diag = json.loads(f["diagnostics"][1])
    res = prov["extraction"]["resampling"]
    assert res["mode"] == "reference" and res["reference_modality"] == "t2"
    assert res["image_interpolator"] == "bspline" and res["mask_interpolator"] == "nearest"
    assert diag["adc"]["diagnostics_Image-original_Spacing"] == "(0.5, 0.5, 3.0)"
    # independent: B-spline the ADC onto the T2 grid by hand
    from radlens_cli.io.images import read_image

    t2 = read_image(str(scanner / "p2" / "t2_dicom"), pixel_float=False)
    adc = sitk.ReadImage(str(scanner / "p2" / "adc.nii.gz"))
    adc_on_t2 = sitk.Resample(sitk.Cast(adc, sitk.sitkFloat64), t2, sitk.Transform(), sitk.sitkBSpline, 0.0)
    zones = sitk.ReadImage(str(scanner / "p2" / "zones.nrrd"))
    pz = sitk.Cast(zones == 1, sitk.sitkUInt8)
    pz.CopyInformation(t2)
    ref = _extract(adc_on_t2, pz, params)
    row = list(t.case_id).index("p2")
    for k, v in ref.items():
        assert t.values[row, t.columns.index(f"adc/{k}")] == pytest.approx(v, rel=1e-12), k


def test_lesion_empty_on_coarse_grid_is_named(cli, scanner, tmp_path):
    r = cli("extract-radiomics", scanner / "cohort.csv", "--modalities", "t2,adc", "--mask", "lesion",
            "--params", _params(tmp_path), "-o", tmp_path / "c.h5", "--failures", tmp_path / "f.csv")
    # a one-voxel lesion on the 0.5 mm T2 grid vanishes on ADC's 2 mm grid, or PyRadiomics refuses it
    assert r.exit_code == 1, r
    fails = pd.read_csv(tmp_path / "f.csv")
    assert set(fails.case_id) == {"p1", "p2"}
    adc = fails[fails.modality == "adc"]
    assert len(adc) == 2 and adc.reason.str.contains("mask is empty on the adc grid").all()
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "c.h5").exists()  # no case succeeded: nothing written


def test_mask_outside_image_is_a_geometry_mismatch(cli, scanner, tmp_path):
    zones = sitk.ReadImage(str(scanner / "p1" / "zones.nrrd"))
    moved = sitk.Image(zones)
    moved.SetOrigin((200.0, 0.0, 0.0))  # drawn somewhere else entirely
    sitk.WriteImage(moved, str(tmp_path / "moved.nrrd"))
    shifted = sitk.Image(zones)
    shifted.SetOrigin((-24.0 + 15.0, -24.0, -15.0))  # a third of the gland off the ADC field of view
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nrrd"))
    man = pd.read_csv(scanner / "cohort.csv")
    man.loc[0, "zones"] = str(tmp_path / "moved.nrrd")
    man.loc[1, "zones"] = str(tmp_path / "shifted.nrrd")
    man.to_csv(tmp_path / "m.csv", index=False)
    r = cli("extract-radiomics", tmp_path / "m.csv", "--modalities", "t2,adc", "--mask", "zones",
            "--params", _params(tmp_path), "-o", tmp_path / "o.h5")
    assert r.exit_code == 1, r
    lines = [ln for ln in r.stderr.splitlines() if "failed:" in ln]
    p1 = [ln for ln in lines if "case p1" in ln]
    assert len(p1) == 2 and all("does not overlap" in ln and "moved.nrrd" in ln for ln in p1)
    p2 = [ln for ln in lines if "case p2, modality adc" in ln]
    assert len(p2) == 1 and "lies outside the adc image's field of view" in p2[0]


def test_no_resample_mask_refuses_other_grids(cli, scanner, tmp_path):
    r = cli("extract-radiomics", scanner / "cohort.csv", "--modalities", "t2,adc", "--mask", "zones",
            "--params", _params(tmp_path), "-o", tmp_path / "o.h5", "--no-resample-mask", "--keep-going")
    # T2 (on the mask's grid) works, ADC is refused for every case: nothing to write, even with --keep-going
    assert r.exit_code == 1, r
    adc = [ln for ln in r.stderr.splitlines() if "modality adc" in ln]
    assert len(adc) == 2 and all("geometry mismatch" in ln and "spacing" in ln for ln in adc)
    assert not any("modality t2" in ln for ln in r.stderr.splitlines())
    assert "no case succeeded" in r.stderr and not (tmp_path / "o.h5").exists()
