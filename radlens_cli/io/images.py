"""Image and mask loading (files or DICOM series folders), label selection, geometry checks.

Everything works in physical space: resampling goes through SimpleITK with the image's
origin, spacing and direction, never through voxel indices.
"""

from __future__ import annotations

import os

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.manifest import MaskSpec


def _sitk():
    import SimpleITK as sitk

    return sitk


def read_image(path: str | None, what: str = "image", pixel_float: bool = True):
    """Read a SimpleITK image from a file (NIfTI, NRRD, MHA, ...) or a DICOM series folder."""
    sitk = _sitk()
    if not path:
        raise RadlensError(f"{what}: no path given (empty manifest cell)")
    if not os.path.exists(path):
        raise RadlensError(f"{what}: file not found: {path}")
    try:
        if os.path.isdir(path):
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(path)
            if not series:
                raise RadlensError(f"{what}: no DICOM series in folder {path}")
            if len(series) > 1:
                raise RadlensError(f"{what}: {len(series)} DICOM series in folder {path}; "
                                   f"give one series per folder")
            files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path, series[0])
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            img = reader.Execute()
        else:
            img = sitk.ReadImage(path)
    except RadlensError:
        raise
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "unreadable"
        raise RadlensError(f"{what}: cannot read image {path}: {first}") from None
    if img.GetDimension() != 3:
        raise RadlensError(f"{what}: {path} is {img.GetDimension()}-D; radlens needs 3-D volumes")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise RadlensError(f"{what}: {path} has {img.GetNumberOfComponentsPerPixel()} components per voxel")
    if pixel_float:
        img = sitk.Cast(img, sitk.sitkFloat32)
    return img


def select_labels(mask, spec: MaskSpec, path: str = "", what: str = "mask"):
    """Binary uint8 mask of the labels in `spec` (all non-zero when spec.labels is None).

    A label that is absent, or a mask that ends up empty, is an error naming the file.
    """
    sitk = _sitk()
    arr = sitk.GetArrayViewFromImage(mask)
    if spec.labels is None:
        sel = arr != 0
    else:
        present = set(np.unique(arr).astype(np.int64).tolist())
        missing = [v for v in spec.labels if v not in present]
        if len(missing) == len(spec.labels):
            shown = sorted(v for v in present if v != 0)[:10]
            raise RadlensError(f"{what}: label(s) {'+'.join(map(str, missing))} absent from {path} "
                               f"(labels present: {shown or 'none'})")
        sel = np.isin(arr, spec.labels)
    if not sel.any():
        raise RadlensError(f"{what}: mask is empty in {path}")
    out = sitk.GetImageFromArray(sel.astype(np.uint8))
    out.CopyInformation(mask)
    return out


def read_mask(path: str | None, spec: MaskSpec, what: str = "mask"):
    """Read a mask/label map and select `spec`'s labels (binary uint8 image)."""
    sitk = _sitk()
    img = read_image(path, what, pixel_float=False)
    img = sitk.Cast(img, sitk.sitkInt32) if img.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkInt32) else img
    return select_labels(img, spec, path, what)


def geometry(img) -> dict:
    return {"size": list(img.GetSize()), "spacing": [round(s, 6) for s in img.GetSpacing()],
            "origin": [round(o, 4) for o in img.GetOrigin()],
            "direction": [round(d, 6) for d in img.GetDirection()]}


def same_geometry(a, b, tol: float = 1e-3) -> bool:
    return (a.GetSize() == b.GetSize()
            and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=tol, atol=tol)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), rtol=tol, atol=tol * max(a.GetSpacing()))
            and np.allclose(a.GetDirection(), b.GetDirection(), atol=tol))


def require_same_geometry(image, mask, image_path: str, mask_path: str, what: str = "") -> None:
    """Error describing the first difference between an image's and a mask's grids."""
    if same_geometry(image, mask):
        return
    gi, gm = geometry(image), geometry(mask)
    diffs = [f"{k} {gi[k]} vs {gm[k]}" for k in ("size", "spacing", "origin", "direction") if gi[k] != gm[k]]
    prefix = f"{what}: " if what else ""
    raise RadlensError(f"{prefix}image/mask geometry mismatch between {image_path} and {mask_path}: "
                       f"{'; '.join(diffs) or 'grids differ beyond tolerance'}")


def resample_like(img, reference, interpolator: str = "linear", default: float = 0.0):
    """Resample `img` onto `reference`'s grid in physical space.

    interpolator: linear, bspline (images), nearest (masks/labels).
    """
    sitk = _sitk()
    interp = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline,
              "nearest": sitk.sitkNearestNeighbor}[interpolator]
    return sitk.Resample(img, reference, sitk.Transform(), interp, default, img.GetPixelID())


def resample_to_spacing(img, spacing, interpolator: str = "linear", default: float = 0.0):
    """Resample to a new voxel spacing (x, y, z in mm), keeping origin and direction."""
    sitk = _sitk()
    spacing = [float(s) for s in spacing]
    old_sp, old_sz = img.GetSpacing(), img.GetSize()
    size = [max(1, int(round(sz * osp / nsp))) for sz, osp, nsp in zip(old_sz, old_sp, spacing)]
    interp = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline,
              "nearest": sitk.sitkNearestNeighbor}[interpolator]
    return sitk.Resample(img, size, sitk.Transform(), interp, img.GetOrigin(), spacing,
                         img.GetDirection(), default, img.GetPixelID())
