"""Fixtures for the radiomics tests: PyRadiomics' real cases and small synthetic cohorts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, SHARED_DATA


def find_cases() -> Path | None:
    """../shared/data/pyradiomics-cases beside the repository (or beside a git worktree's
    parent folder, or $RADLENS_SHARED_DATA)."""
    candidates = [Path(os.environ["RADLENS_SHARED_DATA"])] if os.environ.get("RADLENS_SHARED_DATA") else []
    candidates += [SHARED_DATA, REPO.parent.parent / "shared" / "data"]
    for c in candidates:
        if (c / "pyradiomics-cases").is_dir():
            return c / "pyradiomics-cases"
    return None


@pytest.fixture(scope="session")
def pyradiomics_cases():
    path = find_cases()
    if path is None:
        pytest.skip(f"shared data not found at {SHARED_DATA / 'pyradiomics-cases'} "
                    f"(tests with synthetic volumes still run)")
    return path


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


QUICK = REPO / "examples" / "params" / "quick.yaml"
PAPER = REPO / "examples" / "params" / "radiomic-lens.yaml"


@pytest.fixture(scope="session")
def tiny_params(tmp_path_factory):
    """A fast configuration for the synthetic cohorts: original image, three families."""
    p = tmp_path_factory.mktemp("params") / "tiny.yaml"
    p.write_text("imageType:\n  Original: {}\nfeatureClass:\n  firstorder: []\n  glcm: []\n  glszm: []\n"
                 "setting:\n  binWidth: 5\n  label: 1\n")
    return p
