"""`radlens synth`: determinism, geometry, targets, lesion contrast, scanner-shaped output."""

import os

import numpy as np
import pandas as pd
import pytest

from radlens_cli.synth import phantom


def _read(path):
    import SimpleITK as sitk

    return sitk.ReadImage(str(path))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """8 phantom cases written once through the real CLI (the module's other tests read it)."""
    from typer.testing import CliRunner

    from radlens_cli.main import app

    out = tmp_path_factory.mktemp("synth") / "cohort a"
    r = CliRunner().invoke(app, ["synth", "-o", str(out), "--cases", "8", "--seed", "3"], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    return out


def test_manifest_columns_and_split(cohort):
    df = pd.read_csv(cohort / "cohort.csv")
    assert list(df.columns[:8]) == ["case_id", "t2", "dwi", "adc", "gland", "zones", "lesion", "split"]
    assert {"gland_volume_ml", "risk", "pirads", "n_lesions"} <= set(df.columns)
    assert df["case_id"].is_unique
    assert (df["split"] == "train").sum() == round(0.7 * 8) and (df["split"] == "val").sum() == round(0.1 * 8)
    assert df["risk"].between(0, 3).all() and df["pirads"].between(1, 5).all()
    assert (df["risk"] == np.maximum(df["pirads"] - 2, 0)).all()
    for col in ("t2", "dwi", "adc", "gland", "zones", "lesion"):  # relative paths that exist
        assert all(not os.path.isabs(p) and (cohort / p).is_file() for p in df[col])
    # the foundation's manifest reader takes it as is
    from radlens_cli.io.manifest import read_manifest

    m = read_manifest(str(cohort / "cohort.csv"))
    assert not m.split_derived and len(m) == 8
    np.testing.assert_allclose(m.target("gland_volume_ml"), df["gland_volume_ml"])


def test_geometry_targets_and_masks(cohort):
    import SimpleITK as sitk

    df = pd.read_csv(cohort / "cohort.csv")
    for _, row in df.iterrows():
        t2 = _read(cohort / row["t2"])
        assert t2.GetSpacing() == pytest.approx((0.5, 0.5, 3.0))
        assert t2.GetSize() == (64, 64, 16)
        assert t2.GetPixelID() == sitk.sitkInt16
        for name in ("dwi", "adc", "gland", "zones", "lesion"):
            img = _read(cohort / row[name])
            assert img.GetSize() == t2.GetSize() and img.GetOrigin() == pytest.approx(t2.GetOrigin())
        gland = sitk.GetArrayFromImage(_read(cohort / row["gland"]))
        zones = sitk.GetArrayFromImage(_read(cohort / row["zones"]))
        lesion = sitk.GetArrayFromImage(_read(cohort / row["lesion"]))
        # the target is the mask's voxel count x physical voxel volume
        assert row["gland_volume_ml"] == pytest.approx(gland.sum() * 0.5 * 0.5 * 3.0 / 1000.0, abs=1e-4)
        assert set(np.unique(zones)) == {0, 1, 2}
        np.testing.assert_array_equal(zones > 0, gland > 0)
        # empty exactly for cases without lesions; one label per lesion, inside the gland
        assert lesion.any() == (row["n_lesions"] > 0)
        assert set(np.unique(lesion)) - {0} == set(range(1, row["n_lesions"] + 1))
        assert not (lesion > 0)[gland == 0].any()
        assert (row["pirads"] == 1) if row["n_lesions"] == 0 else (row["pirads"] >= 2)


def test_same_seed_same_bytes_other_seed_differs(cli, tmp_path, cohort):
    same = tmp_path / "same"
    other = tmp_path / "other"
    assert cli("synth", "-o", same, "--cases", "8", "--seed", "3").exit_code == 0
    assert cli("synth", "-o", other, "--cases", "8", "--seed", "4").exit_code == 0
    assert (same / "cohort.csv").read_bytes() == (cohort / "cohort.csv").read_bytes()
    for name in ("t2.nii.gz", "adc.nii.gz", "lesion.nii.gz"):
        assert (same / "case002" / name).read_bytes() == (cohort / "case002" / name).read_bytes()
    assert (other / "cohort.csv").read_bytes() != (cohort / "cohort.csv").read_bytes()
    assert (other / "case002" / "t2.nii.gz").read_bytes() != (cohort / "case002" / "t2.nii.gz").read_bytes()


def test_a_case_does_not_depend_on_cohort_size():
    a = phantom.generate_case(5, seed=1)
    b = phantom.generate_case(5, seed=1)
    c = phantom.generate_case(5, seed=2)
    np.testing.assert_array_equal(a["t2"], b["t2"])
    assert not np.array_equal(a["t2"], c["t2"])


def test_lesions_dark_on_t2_and_adc_bright_on_dwi():
    ratios = {"t2": [], "dwi": [], "adc": []}
    zone_t2 = []
    for i in range(40):
        case = phantom.generate_case(i, seed=0)
        lesion = case["lesion"] > 0
        if not lesion.any():
            continue
        around = (case["gland"] > 0) & ~lesion
        for key in ratios:
            ratios[key].append(case[key][lesion].mean() / case[key][around].mean())
        zone_t2.append(case["t2"][case["zones"] == 1].mean() / case["t2"][case["zones"] == 2].mean())
    assert len(ratios["t2"]) >= 15
    assert np.mean(ratios["t2"]) < 0.9
    assert np.mean(ratios["adc"]) < 0.9
    assert np.mean(ratios["dwi"]) > 1.2
    assert np.mean(zone_t2) > 1.1  # PZ brighter than TZ on T2


def test_risk_follows_lesion_size_and_conspicuity():
    assert phantom.lesion_score(0.2, 10, 10) == 2
    assert phantom.lesion_score(0.5, 10, 10) == 3
    assert phantom.lesion_score(0.9, 2, 20) == 4
    assert phantom.lesion_score(0.9, 8, 20) == 5
    assert [phantom.risk_group(p) for p in (1, 2, 3, 4, 5)] == [0, 0, 1, 2, 3]


def test_block_average_matches_a_direct_mean():
    fine = phantom.Grid((16, 16, 3), (0.5, 0.5, 3.0))
    coarse, k = phantom.coarse_grid(fine)
    assert k == 4 and coarse.spacing == (2.0, 2.0, 3.0)
    arr = np.arange(np.prod(fine.shape), dtype=float).reshape(fine.shape)
    got = phantom.block_average(arr, fine, coarse)
    _, ox, oy = coarse.block
    assert got[1, 0, 2] == pytest.approx(arr[1, oy:oy + 4, ox + 8:ox + 12].mean())
    # the coarse voxel's centre is the centre of the fine voxels it averages
    fx = fine.origin[0] + fine.spacing[0] * (ox + 8 + 1.5)
    assert coarse.origin[0] + 2 * coarse.spacing[0] == pytest.approx(fx)


def test_scanner_mode_dicom_and_coarse_grids(cli, spaced_tmp):
    import SimpleITK as sitk

    from radlens_cli.io.images import read_image, read_mask, require_same_geometry
    from radlens_cli.io.manifest import MaskSpec, read_manifest

    out = spaced_tmp / "scanner"
    r = cli("synth", "-o", out, "--cases", "3", "--seed", "1", "--scanner")
    assert r.exit_code == 0, r
    m = read_manifest(str(out / "cohort.csv"))
    for t2_path, adc_path, dwi_path, zones_path in zip(m.paths("t2"), m.paths("adc"), m.paths("dwi"),
                                                        m.paths("zones")):
        assert os.path.isdir(t2_path)
        series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(t2_path)
        assert len(series) == 1
        t2 = read_image(t2_path)
        assert t2.GetSize() == (64, 64, 16)
        assert t2.GetSpacing() == pytest.approx((0.5, 0.5, 3.0))
        assert t2.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
        zones = read_mask(zones_path, MaskSpec("zones", (1, 2)))
        require_same_geometry(t2, zones, t2_path, zones_path)  # masks on the T2 grid
        assert read_mask(zones_path, MaskSpec("zones", (1,))).GetSize() == t2.GetSize()
        for path in (adc_path, dwi_path):
            img = read_image(path)
            assert img.GetSpacing() == pytest.approx((2.0, 2.0, 3.0))
            fov = np.array(img.GetSize()) * np.array(img.GetSpacing())
            assert (fov[:2] < np.array([32.0, 32.0])).all()  # smaller field of view than T2
            lo = np.array(img.GetOrigin()) - np.array(img.GetSpacing()) / 2
            t2_lo = np.array(t2.GetOrigin()) - np.array(t2.GetSpacing()) / 2
            assert (lo >= t2_lo - 1e-6).all()
    # the gland lies inside the coarse field of view: resampling the mask there keeps it whole
    gland = sitk.ReadImage(m.paths("gland")[0])
    adc = read_image(m.paths("adc")[0])
    from radlens_cli.io.images import resample_like

    on_adc = resample_like(gland, adc, "nearest")
    kept = sitk.GetArrayFromImage(on_adc).sum() * 2 * 2 * 3
    total = sitk.GetArrayFromImage(gland).sum() * 0.5 * 0.5 * 3
    assert kept == pytest.approx(total, rel=0.35)


def test_scanner_dicom_is_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        case = phantom.generate_case(0, 0, scanner=True)
        phantom.write_dicom_series(case["t2"], case["grid"], str(d / "t2"), "case000", 0)
    files = sorted(os.listdir(a / "t2"))
    assert len(files) == 16
    assert all((a / "t2" / f).read_bytes() == (b / "t2" / f).read_bytes() for f in files)


def test_refuses_non_empty_folder_without_force(cli, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "note.txt").write_text("mine")
    r = cli("synth", "-o", out, "--cases", "2")
    assert r.exit_code == 1
    assert r.stderr.strip() == f"radlens synth: error: output folder is not empty: {out} (use --force to write into it)"
    assert not (out / "cohort.csv").exists()
    r = cli("synth", "-o", out, "--cases", "2", "--force")
    assert r.exit_code == 0, r
    assert (out / "note.txt").exists() and (out / "cohort.csv").exists()
    assert r.stdout == ""  # stdout carries data only


def test_bad_options(cli, tmp_path):
    r = cli("synth", "-o", tmp_path / "x", "--size", "64,64")
    assert r.exit_code == 2 and "--size" in r.stderr and "Traceback" not in r.stderr
    r = cli("synth", "-o", tmp_path / "x", "--spacing", "0.5,a,3")
    assert r.exit_code == 2 and "--spacing" in r.stderr
    r = cli("synth", "-o", tmp_path / "x", "--cases", "0")
    assert r.exit_code == 2
    r = cli("synth", "-o", tmp_path / "no such" / "x", "--cases", "1")
    assert r.exit_code == 1 and "parent does not exist" in r.stderr


def test_texture_mode_latent_sets_the_scale_not_the_size():
    """synth --texture: the gland's texture scale follows the case's latent texture_mm (the
    neighbour correlation of T2 inside the gland rises with it), the gland has nearly one
    size and no lesion, and the latent has its own stream (same seed, same texture_mm)."""
    from scipy.stats import spearmanr

    grid = phantom.Grid((48, 48, 10), (0.5, 0.5, 3.0))
    rows = []
    for i in range(12):
        c = phantom.generate_case(i, 0, grid, texture=True)
        d = phantom.generate_case(i, 0, grid)
        assert "texture_mm" not in d
        t2, gland = c["t2"].astype(np.float64), c["gland"] > 0
        pair = gland[:, :, 1:] & gland[:, :, :-1]  # in-plane neighbours, both in the gland
        r = np.corrcoef(t2[:, :, 1:][pair], t2[:, :, :-1][pair])[0, 1]
        assert phantom.TEXTURE_MM[0] <= c["texture_mm"] <= phantom.TEXTURE_MM[1]
        assert c["n_lesions"] == 0 and not c["lesion"].any() and c["pirads"] == 1
        rows.append((c["texture_mm"], r, c["gland_volume_ml"], d["gland_volume_ml"]))
    mm, r, vol, vol_default = np.array(rows).T
    assert spearmanr(mm, r)[0] > 0.8
    assert mm.max() / mm.min() > 4  # the latent spans its range
    assert vol.std() / vol.mean() < 0.1 < 0.3 < vol_default.std() / vol_default.mean()
    again = phantom.generate_case(3, 0, grid, texture=True)
    assert again["texture_mm"] == rows[3][0]
    assert np.array_equal(again["t2"], phantom.generate_case(3, 0, grid, texture=True)["t2"])


def test_texture_mode_manifest_and_provenance(cli, tmp_path, cohort):
    import json

    out = tmp_path / "texture"
    assert cli("synth", "-o", out, "--cases", "3", "--size", "32,32,8", "--texture").exit_code == 0
    df = pd.read_csv(out / "cohort.csv")
    assert list(df.columns[-1:]) == ["texture_mm"] and df["texture_mm"].between(*phantom.TEXTURE_MM).all()
    assert json.loads((out / "provenance.json").read_text())["params"]["texture"] is True
    # without --texture: neither the column nor the parameter (earlier cohorts' bytes stay as they were)
    assert "texture_mm" not in pd.read_csv(cohort / "cohort.csv").columns
    assert "texture" not in json.loads((cohort / "provenance.json").read_text())["params"]
