"""Fixtures for the radiomics tests: PyRadiomics' real cases and small synthetic cohorts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PYRADIOMICS_CASES, REPO


@pytest.fixture(scope="session")
def pyradiomics_cases() -> Path:
    """PyRadiomics' own cases and baseline values, shipped in tests/data/pyradiomics/."""
    assert (PYRADIOMICS_CASES / "baseline").is_dir(), f"test data missing: {PYRADIOMICS_CASES}"
    return PYRADIOMICS_CASES


def write_volume(path, arr, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), pixel=None):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    if pixel is not None:
        img = sitk.Cast(img, pixel)
    sitk.WriteImage(img, str(path))
    return str(path)


def blob_mask(shape, center, radius):
    z, y, x = np.indices(shape)
    cz, cy, cx = center
    return (((z - cz) / radius[0]) ** 2 + ((y - cy) / radius[1]) ** 2 + ((x - cx) / radius[2]) ** 2 <= 1).astype(np.uint8)


def make_cohort(folder: Path, n_cases=5, modalities=("t2", "adc"), shape=(12, 24, 24), seed=0,
                split=True, name="cohort.csv") -> Path:
    """Small synthetic cases: textured volumes per modality and a blob mask (labels 1 and 2).

    Images are float32 noise + smooth structure with per-case contrast, 1x1x2 mm.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_cases):
        cid = f"case{i:02d}"
        lab = blob_mask(shape, (shape[0] // 2, shape[1] // 2, shape[2] // 2), (4, 7, 7))
        lab[:, : shape[1] // 2][lab[:, : shape[1] // 2] > 0] = 2  # a second zone
        row = {"case_id": cid}
        for j, m in enumerate(modalities):
            z = np.indices(shape).sum(0).astype(np.float32)
            arr = 100 + 20 * j + (5 + i) * np.sin(z / (3 + i)) + rng.normal(0, 4 + i, size=shape)
            row[m] = write_volume(folder / f"{cid}_{m}.nrrd", arr.astype(np.float32))
        row["zones"] = write_volume(folder / f"{cid}_zones.nrrd", lab)
        if split:
            row["split"] = ["train", "train", "train", "val", "test"][i % 5]
        rows.append(row)
    import pandas as pd

    df = pd.DataFrame(rows)
    for col in list(modalities) + ["zones"]:
        df[col] = [os.path.basename(p) for p in df[col]]  # relative paths resolve against the manifest
    out = folder / name
    df.to_csv(out, index=False)
    return out


@pytest.fixture
def cohort(tmp_path):
    return make_cohort(tmp_path / "cohort")


QUICK = REPO / "radlens_cli" / "radiomics" / "presets" / "quick.yaml"
PAPER = REPO / "radlens_cli" / "radiomics" / "presets" / "paper.yaml"


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory):
    """A fast configuration for the synthetic cohorts: original image, three families."""
    p = tmp_path_factory.mktemp("params") / "tiny.yaml"
    p.write_text("imageType:\n  Original: {}\nfeatureClass:\n  firstorder: []\n  glcm: []\n  glszm: []\n"
                 "setting:\n  binWidth: 5\n  label: 1\n")
    return p


def write_dicom_series(folder: Path, img) -> str:
    """Write a 3-D image as a DICOM series (one int16 file per slice), as a scanner would."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.Cast(img, sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = img.GetDirection()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.42"
    for z in range(img.GetDepth()):
        sl = img[:, :, z]
        tags = {
            "0008|0060": "MR", "0020|000e": series_uid, "0020|000d": series_uid + ".1",
            "0020|0013": str(z + 1),
            "0020|0032": "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, z)))),
            "0020|0037": "\\".join(map(str, (direction[0], direction[3], direction[6],
                                              direction[1], direction[4], direction[7]))),
            "0028|0030": f"{img.GetSpacing()[1]}\\{img.GetSpacing()[0]}",
            "0018|0050": str(img.GetSpacing()[2]),
            "0008|0018": f"{series_uid}.{z + 1}",
        }
        for k, v in tags.items():
            sl.SetMetaData(k, v)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(sl)
    return str(folder)


def make_scanner_case(folder: Path, lesion_voxels: int = 0):
    """One case shaped as a scanner writes it: T2 0.5x0.5x3 mm as a DICOM series, ADC
    2x2x3 mm on a smaller field of view (NIfTI), a zone label map (PZ=1, TZ=2) on the T2 grid,
    and optionally a tiny lesion mask on the T2 grid."""
    import SimpleITK as sitk

    rng = np.random.default_rng(7)
    shape_t2 = (10, 96, 96)  # z, y, x: 48 x 48 x 30 mm
    zz, yy, xx = np.indices(shape_t2)
    t2 = 300 + 60 * np.sin(xx / 5.0) * np.cos(yy / 7.0) + rng.normal(0, 15, shape_t2)
    t2_img = sitk.GetImageFromArray(t2.astype(np.float32))
    t2_img.SetSpacing((0.5, 0.5, 3.0))
    t2_img.SetOrigin((-24.0, -24.0, -15.0))
    t2_dir = write_dicom_series(folder / "t2_dicom", t2_img)

    shape_adc = (10, 18, 18)  # 36 x 36 x 30 mm: smaller field of view, centred
    z2, y2, x2 = np.indices(shape_adc)
    adc = 1200 + 200 * np.cos(x2 / 2.0) + rng.normal(0, 40, shape_adc)
    adc_img = sitk.GetImageFromArray(adc.astype(np.float32))
    adc_img.SetSpacing((2.0, 2.0, 3.0))
    adc_img.SetOrigin((-17.0, -17.0, -15.0))
    sitk.WriteImage(adc_img, str(folder / "adc.nii.gz"))

    lab = blob_mask(shape_t2, (5, 48, 48), (3.2, 22, 22))
    lab[(lab > 0) & (xx < 48)] = 2
    zones = sitk.GetImageFromArray(lab.astype(np.uint8))
    zones.CopyInformation(t2_img)
    sitk.WriteImage(zones, str(folder / "zones.nrrd"))
    paths = {"t2": t2_dir, "adc": str(folder / "adc.nii.gz"), "zones": str(folder / "zones.nrrd")}
    les = np.zeros(shape_t2, np.uint8)
    if lesion_voxels:
        les[5, 48, 48:48 + lesion_voxels] = 1
    lesion = sitk.GetImageFromArray(les)
    lesion.CopyInformation(t2_img)
    sitk.WriteImage(lesion, str(folder / "lesion.nrrd"))
    paths["lesion"] = str(folder / "lesion.nrrd")
    return paths


