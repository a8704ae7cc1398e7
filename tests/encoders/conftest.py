"""Small synthetic mpMRI cohorts shaped like scanner output, and tiny encoders."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # 2 shared cores: threads only contend

# Tiny preprocessing so each case takes milliseconds.
SMALL = ["--crop", "32,32,16", "--spacing", "1,1,2"]


def write_case(folder, cid: str, seed: int, direction=None, zones: bool = False, dicom_t2: bool = False):
    """T2 at 0.5x0.5x3 mm on a large field of view, ADC and DWI at 2x2x3 mm on a smaller one,
    the gland mask (or zone label map PZ=1, TZ=2) drawn on the T2 grid. Returns file names."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    direction = direction or (1, 0, 0, 0, 1, 0, 0, 0, 1)
    t2_size = (96, 96, 12)  # x, y, z
    zz, yy, xx = np.mgrid[0:t2_size[2], 0:t2_size[1], 0:t2_size[0]]
    blob = np.exp(-(((xx - 52) / 14.0) ** 2 + ((yy - 44) / 12.0) ** 2 + ((zz - 6) / 3.0) ** 2))
    t2 = (200 + 400 * blob + rng.normal(0, 20, blob.shape)).astype(np.float32)
    t2_img = sitk.GetImageFromArray(t2)
    t2_img.SetSpacing((0.5, 0.5, 3.0))
    t2_img.SetOrigin((-24.0 + seed, -24.0, -18.0))
    t2_img.SetDirection(direction)
    lab = np.zeros(t2.shape, np.uint8)
    lab[4:9, 34:54, 40:64] = 2
    lab[4:9, 46:54, 40:64] = 1
    mask = sitk.GetImageFromArray(lab if zones else (lab > 0).astype(np.uint8))
    mask.CopyInformation(t2_img)

    def coarse(scale):
        size = (18, 18, 8)
        vol = (scale * (1 + rng.random((size[2], size[1], size[0])))).astype(np.float32)
        img = sitk.GetImageFromArray(vol)
        img.SetSpacing((2.0, 2.0, 3.0))
        # centred on the T2 field of view's centre but covering less of it
        centre = np.array(t2_img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in t2_size]))
        d = np.array(direction, float).reshape(3, 3)
        img.SetDirection(direction)
        img.SetOrigin(tuple(centre - d @ (np.array([2.0, 2.0, 3.0]) * (np.array(size) - 1) / 2)))
        return img

    names = {}
    if dicom_t2:
        names["t2"] = f"{cid}_t2_dicom"
        write_dicom_series(t2_img, os.path.join(folder, names["t2"]))
    else:
        names["t2"] = f"{cid}_t2.nii.gz"
        sitk.WriteImage(t2_img, os.path.join(folder, names["t2"]))
    for name, img in (("adc", coarse(1000.0)), ("dwi", coarse(50.0)), ("gland", mask)):
        names[name] = f"{cid}_{name}.nrrd" if name == "dwi" else f"{cid}_{name}.nii.gz"
        sitk.WriteImage(img, os.path.join(folder, names[name]))
    return names


def write_dicom_series(img, folder: str) -> None:
    """One slice per file, the way a scanner writes a series (int16, position/orientation tags)."""
    import SimpleITK as sitk

    os.makedirs(folder, exist_ok=True)
    arr = np.round(sitk.GetArrayFromImage(img)).astype(np.int16)
    vol = sitk.GetImageFromArray(arr)
    vol.CopyInformation(img)
    d = img.GetDirection()
    orient = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(vol.GetDepth()):
        sl = vol[:, :, k]
        pos = img.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0008|0060", "MR"), ("0020|000d", "1.2.826.0.1.3680043.2.1125.1"),
                           ("0020|000e", "1.2.826.0.1.3680043.2.1125.1.1"), ("0020|0037", orient),
                           ("0020|0032", "\\".join(f"{p:.6f}" for p in pos)), ("0020|0013", str(k + 1)),
                           ("0018|0050", f"{img.GetSpacing()[2]:.6f}"),
                           ("0028|0030", f"{img.GetSpacing()[1]:.6f}\\{img.GetSpacing()[0]:.6f}")):
            sl.SetMetaData(tag, value)
        writer.SetFileName(os.path.join(folder, f"slice{k:03d}.dcm"))
        writer.Execute(sl)


def write_cohort(folder, n: int = 4, zones: bool = False, dicom_first: bool = False, split: bool = True,
                 direction=None):
    os.makedirs(folder, exist_ok=True)
    rows = ["case_id,t2,dwi,adc,gland" + (",split" if split else "")]
    splits = ["train", "val", "test", "train", "train", "test", "train", "val"]
    for i in range(n):
        cid = f"p{i:02d}"
        names = write_case(folder, cid, seed=i, direction=direction, zones=zones, dicom_t2=dicom_first and i == 0)
        row = f"{cid},{names['t2']},{names['dwi']},{names['adc']},{names['gland']}"
        rows.append(row + (f",{splits[i % len(splits)]}" if split else ""))
    path = os.path.join(folder, "cohort.csv")
    with open(path, "w") as fh:
        fh.write("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def cohort(tmp_path_factory):
    """Four cases, files only (T2 fine grid, DWI/ADC coarse and smaller field of view)."""
    return write_cohort(str(tmp_path_factory.mktemp("cohort")), n=4)


@pytest.fixture(scope="session")
def atto3(tmp_path_factory):
    """A random atto encoder with 3 input channels (radlens checkpoint)."""
    import torch

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("enc") / "atto3.pt")
    save_radlens_checkpoint(path, build_encoder("atto", 3), "convnextv2_atto", 3, None)
    return path
