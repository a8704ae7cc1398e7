"""`--orient RAS --layout xyz --norm-region volume` gives the tensor MONAI's own pipeline
(LoadImaged, EnsureChannelFirstd, Orientationd RAS, Spacingd, NormalizeIntensityd nonzero,
crop around the mask) gives, for an oblique scan stored with three voxel axis orders; a
wrong slice direction, an x/y swap or radlens's default (native, z,y,x) does not."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from radlens_cli.encoders.preprocess import PreprocessConfig, preprocess_case
from radlens_cli.io.manifest import MaskSpec

CROP = (48, 48, 16)  # x, y, z
PIXDIM = (0.5, 0.5, 1.5)


def _rot(axis, deg):
    t = np.deg2rad(deg)
    m = np.eye(3)
    i, j = [k for k in range(3) if k != axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = np.cos(t), -np.sin(t), np.sin(t), np.cos(t)
    return m


def _phantom(folder, name, permute=None):
    """An asymmetric smooth T2-like volume (0.6x0.6x3 mm, tilted 8 and 4 degrees) and a gland mask."""
    size, sp = (64, 60, 16), (0.6, 0.6, 3.0)
    d = _rot(0, 8.0) @ _rot(2, 4.0)
    origin = np.array([-18.0, -14.0, -20.0])
    zz, yy, xx = np.mgrid[0:size[2], 0:size[1], 0:size[0]].astype(float)
    p = origin[:, None, None, None] + np.einsum("ij,jzyx->izyx", d * np.array(sp)[None, :], np.stack([xx, yy, zz]))

    def g(c, s):
        return np.exp(-sum(((p[k] - c[k]) / s[k]) ** 2 for k in range(3)))

    arr = (100 + 400 * g((4, 6, 3), (9, 7, 10)) + 300 * g((12, 12, -4), (4, 3, 5)) - 150 * g((-3, 2, 10), (3, 5, 4))
           + 200 * g((7, 18, 14), (5, 4, 6)) + 2 * p[0]).astype(np.float32)
    mask = (g((4, 6, 3), (9, 7, 10)) > 0.5).astype(np.uint8)
    paths = []
    for what, a in (("img", arr), ("mask", mask)):
        im = sitk.GetImageFromArray(a)
        im.SetSpacing(sp)
        im.SetOrigin(tuple(origin))
        im.SetDirection(tuple(d.ravel()))
        if permute is not None:
            im = sitk.Flip(sitk.PermuteAxes(im, permute[0]), permute[1])
        path = str(folder / f"{name}_{what}.nii.gz")
        sitk.WriteImage(im, path)
        paths.append(path)
    return paths


def _monai(img, mask):
    from monai.transforms import (Compose, EnsureChannelFirstd, LoadImaged, NormalizeIntensityd, Orientationd,
                                  SpatialCrop, SpatialPad, Spacingd)

    keys = ["image", "label"]
    t = Compose([LoadImaged(keys=keys), EnsureChannelFirstd(keys=keys), Orientationd(keys=keys, axcodes="RAS"),
                 Spacingd(keys=keys, pixdim=PIXDIM, mode=("bilinear", "nearest")),
                 NormalizeIntensityd(keys="image", nonzero=True)])
    d = t({"image": img, "label": mask})
    nz = np.nonzero(np.asarray(d["label"][0]))
    centre = [int(round((a.min() + a.max()) / 2)) for a in nz]
    shape = d["image"].shape[1:]
    x = SpatialPad(spatial_size=[s + 2 * max(CROP) for s in shape])(d["image"])
    centre = [c + (x.shape[k + 1] - shape[k]) // 2 for k, c in enumerate(centre)]
    return np.asarray(SpatialCrop(roi_center=centre, roi_size=CROP)(x))[0]


def _corr(a, b):
    """Best correlation over box offsets of up to one voxel per axis: where a box of even
    size starts differs by a voxel between crop conventions (MONAI's SpatialCrop puts the
    centre voxel at size/2, radlens the mask's centre at (size-1)/2), which is not what
    this test is about; a flipped or permuted axis is."""
    import itertools

    best = -1.0
    for s in itertools.product((-1, 0, 1), repeat=3):
        sa = tuple(slice(max(0, k), n + min(0, k)) for k, n in zip(s, a.shape))
        sb = tuple(slice(max(0, -k), n + min(0, -k)) for k, n in zip(s, b.shape))
        best = max(best, float(np.corrcoef(a[sa].ravel(), b[sb].ravel())[0, 1]))
    return best


@pytest.mark.parametrize("name,permute", [("lps", None), ("ras", ((0, 1, 2), (True, True, False))),
                                          ("sagittal", ((2, 0, 1), (False, True, True)))])
def test_radlens_ras_xyz_tensor_agrees_with_monai(tmp_path, name, permute):
    img, mask = _phantom(tmp_path, name, permute)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = _monai(img, mask)
    cfg = PreprocessConfig(["t2"], MaskSpec("mask"), spacing=PIXDIM, crop=CROP, norm="zscore",
                           norm_region="volume", orient="RAS", layout="xyz")
    ours = preprocess_case([img], mask, cfg)["volume"][0]
    assert ours.shape == ref.shape == CROP
    assert _corr(ours, ref) > 0.995
    # the mistakes the options exist for: each is far off
    assert _corr(ours[:, :, ::-1], ref) < 0.95  # slice direction flipped
    assert _corr(np.swapaxes(ours, 0, 1), ref) < 0.95  # x and y swapped
    native = preprocess_case([img], mask, PreprocessConfig(["t2"], MaskSpec("mask"), spacing=PIXDIM[::-1],
                                                           crop=CROP[::-1], norm="zscore"))["volume"][0]
    if permute is not None:  # radlens's default, (z, y, x) of the file's own axes, shaped like MONAI's
        assert native.shape == ref.shape and _corr(native, ref) < 0.95
