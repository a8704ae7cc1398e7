"""Image and mask loading (files or DICOM series folders), label selection, geometry checks.

Everything works in physical space: resampling goes through SimpleITK with the image's
origin, spacing and direction, never through voxel indices.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io import dicom_masks as dm
from radlens_cli.io.dicom_masks import find_dicom_mask, is_dicom_file
from radlens_cli.io.manifest import MaskSpec


class EmptyMaskError(RadlensError):
    """The selected labels / segments hold no voxel (the file itself is fine); `reason`
    says so without the file name."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


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


def select_labels(mask, spec: MaskSpec, path: str = "", what: str = "mask", allow_empty: bool = False):
    """Binary uint8 mask of the labels in `spec` (all non-zero when spec.labels is None).

    A label that is absent, or a mask that ends up empty (unless allow_empty), is an error
    naming the file. Names select DICOM segments, not labels: an error here.
    """
    sitk = _sitk()
    if spec.names:
        raise RadlensError(f"{what}: {path} is a label map, not a DICOM-SEG or RTSTRUCT: select its labels "
                           f"by number, not by name ({'+'.join(spec.names)})")
    arr = sitk.GetArrayViewFromImage(mask)
    if not allow_empty and not arr.any():
        raise EmptyMaskError(f"{what}: mask is empty in {path} (no non-zero voxel)",
                             "mask is empty (no non-zero voxel)")
    if spec.labels is None:
        sel = arr != 0
    else:
        sel = np.isin(arr, spec.labels)
        if not sel.any() and not allow_empty:
            present = set(np.unique(arr).astype(np.int64).tolist())
            shown = sorted(v for v in present if v != 0)[:10]
            raise RadlensError(f"{what}: label(s) {'+'.join(map(str, spec.labels))} absent from {path} "
                               f"(labels present: {shown or 'none'})")
    if not allow_empty and not sel.any():  # pragma: no cover - caught above
        raise EmptyMaskError(f"{what}: mask is empty in {path}", "mask is empty")
    out = sitk.GetImageFromArray(sel.astype(np.uint8))
    out.CopyInformation(mask)
    return out


def read_mask(path: str | None, spec: MaskSpec, what: str = "mask", images=(), allow_empty: bool = False):
    """Read a mask (label map, DICOM-SEG or RTSTRUCT) and select `spec` (binary uint8 image).

    images: the case's (name, path) images, for the grid a DICOM mask references; see
    `load_mask`, which also returns what was read.
    """
    return load_mask(path, spec, what, images=images, allow_empty=allow_empty)[0]


def load_mask(path: str | None, spec: MaskSpec, what: str = "mask", images=(), loaded: dict | None = None,
              allow_empty: bool = False, strict_geometry: bool = False, other_grids=()):
    """The case's binary uint8 mask from a label map, a DICOM-SEG or an RTSTRUCT, and a record.

    images: the case's (name, path) images in modality order; loaded: path -> an image
    already read (saves reading it again); other_grids: more (name, path) images of the
    case, not used in this run, whose lattices also count as the case's grids.

    A DICOM mask goes on the grid of the series it references, found by SeriesInstanceUID
    among the images; when no image is DICOM, a SEG keeps its own frame geometry and an
    RTSTRUCT is rasterised on the first image's grid (a note says so); DICOM images none
    of which is the referenced series is an error naming the UIDs.

    The record: {"mask": DICOM object, segments used, where it was placed, notes} for a
    DICOM mask, {"series": {name: SeriesInstanceUID}} for the DICOM images, and
    {"geometry": ...} plus a "warning" when the mask's origin lies on none of the images'
    voxel lattices (an error with strict_geometry).
    """
    sitk = _sitk()
    loaded = {} if loaded is None else loaded  # filled with the images read here
    images = [(str(n), p) for n, p in images if p]
    if not path:
        raise RadlensError(f"{what}: no path given (empty manifest cell)")
    if not os.path.exists(path):
        raise RadlensError(f"{what}: file not found: {path}")
    info: dict = {}
    series = {n: uid for n, p in images if (uid := series_uid(p))}
    if series:
        info["series"] = series
    found = dm.find_dicom_mask(path, what)
    if found is None:
        raw = read_image(path, what, pixel_float=False)
        if raw.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkInt32):
            raw = sitk.Cast(raw, sitk.sitkInt32)
        mask = select_labels(raw, spec, path, what, allow_empty)
        own = mask
    else:
        kind, file = found
        obj = dm.read_dicom_mask(kind, file, what)
        selected = obj.select(spec.labels, spec.names, what)
        numbers = [n for n, _ in selected]
        ref = next(((n, p) for n, p in images if series.get(n) in obj.referenced_series), None)
        if ref is None and series:
            have = ", ".join(f"{n} {u}" for n, u in series.items())
            want = ", ".join(obj.referenced_series) or "none"
            raise RadlensError(f"{what}: {kind} {file} references series {want}, but the case's DICOM "
                               f"series are {have}")
        notes = []

        def grid_of(name_path):
            p = name_path[1]
            if p not in loaded:
                loaded[p] = read_image(p, name_path[0])
            return loaded[p]

        if kind == "SEG":
            own = dm.seg_volume(obj, numbers, what)
            if ref is not None:
                grid = grid_of(ref)
                mask = (resample_like(own, grid, "nearest") if own is not None else _zeros_like(grid))
                placed = ref[0]
            else:
                notes.append("no DICOM image series in the case: the SEG is placed by its own frame geometry")
                placed = "SEG frame geometry"
                mask = own
                if mask is None:  # no frame for these segments: empty on the SEG's whole geometry
                    whole = dm.seg_volume(obj, list(obj.segments), what)
                    if whole is None:
                        raise RadlensError(f"{what}: SEG {file} holds no frame")
                    mask = _zeros_like(whole)
        else:
            own = None  # contours are drawn on an image's grid: on a lattice by construction
            if ref is None:
                if not images:
                    raise RadlensError(f"{what}: RTSTRUCT {file} needs an image grid to be rasterised on")
                ref = images[0]
                notes.append(f"no DICOM image series in the case: the RTSTRUCT is rasterised on the "
                             f"{ref[0]} grid ({ref[1]})")
            mask, stats = dm.rtstruct_mask(obj, numbers, grid_of(ref), what)
            placed = ref[0]
            if stats["dropped"]:
                notes.append(f"{stats['dropped']} contour(s) beyond the {ref[0]} volume dropped")
        if not allow_empty and not sitk.GetArrayViewFromImage(mask).any():
            names = "+".join(name for _, name in selected)
            where = f" on the {placed} grid" if kind == "RTSTRUCT" else ""
            raise EmptyMaskError(f"{what}: segment(s) {names} of {kind} {file} hold no voxel{where}",
                                 f"segment(s) {names} of the {kind} hold no voxel{where}")
        info["mask"] = {**obj.provenance(selected), "path": file, "placed_on": placed}
        if notes:
            info["notes"] = notes
    if own is not None and images:
        geo = lattice_check(own, images, loaded, other_grids)
        if geo is not None:
            info["geometry"] = geo
            msg = (f"the mask {path} lies on none of the case's image grids: its origin is "
                   f"{geo['offset_mm']:.3g} mm from the nearest voxel lattice ({geo['nearest']})")
            if strict_geometry:
                raise RadlensError(f"{what}: {msg} (strict geometry)")
            info["warning"] = msg
    return mask, info


def _zeros_like(img):
    sitk = _sitk()
    out = sitk.Image(img.GetSize(), sitk.sitkUInt8)
    out.CopyInformation(img)
    return out


_UID_CACHE: dict[tuple, str | None] = {}


def series_uid(path: str | None) -> str | None:
    """SeriesInstanceUID of a DICOM image (series folder or file); None for other formats."""
    if not path or not os.path.exists(path):
        return None
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns)
    if key not in _UID_CACHE:
        uid = None
        if os.path.isdir(path):
            ids = _sitk().ImageSeriesReader.GetGDCMSeriesIDs(path)
            uid = str(ids[0]) if len(ids) == 1 else None
        elif is_dicom_file(path):
            import pydicom

            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
                uid = str(ds.get("SeriesInstanceUID", "")) or None
            except Exception:  # noqa: BLE001 - unreadable: reported when the image is read
                uid = None
        if len(_UID_CACHE) > 4096:
            _UID_CACHE.clear()
        _UID_CACHE[key] = uid
    return _UID_CACHE[key]


IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")


def looks_like_image(path: str | None) -> bool:
    """A path to an existing image: a folder (DICOM series) or file with a known image
    suffix or the DICOM preamble, not a DICOM-SEG or RTSTRUCT."""
    if not path or not os.path.exists(path):
        return False
    if not (os.path.isdir(path) or path.lower().endswith(IMAGE_SUFFIXES) or is_dicom_file(path)):
        return False
    try:
        return find_dicom_mask(path) is None
    except RadlensError:
        return False


def header_geometry(path: str):
    """(origin, spacing, direction 3x3) of an image file or DICOM series folder, from headers."""
    sitk = _sitk()
    if os.path.isdir(path):
        ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(path)
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(path, ids[0]) if ids else ()
        if not files:
            raise RadlensError(f"no DICOM series in folder {path}")
        first = _info(files[0])
        origin, spacing = np.array(first.GetOrigin()), np.array(first.GetSpacing(), dtype=np.float64)
        direction = np.array(first.GetDirection()).reshape(3, 3)
        if len(files) > 1:
            last = np.array(_info(files[-1]).GetOrigin())
            spacing[2] = float(np.linalg.norm(last - origin)) / (len(files) - 1) or spacing[2]
        return origin, spacing, direction
    r = _info(path)
    return np.array(r.GetOrigin()), np.array(r.GetSpacing()), np.array(r.GetDirection()).reshape(3, 3)


def _info(path: str):
    sitk = _sitk()
    r = sitk.ImageFileReader()
    r.SetFileName(path)
    r.ReadImageInformation()
    return r


def lattice_offset_mm(point, origin, spacing, direction) -> float:
    """Distance (mm) from `point` to the nearest voxel centre of the lattice (origin, spacing,
    direction): 0 for any voxel of that lattice, whatever the field of view."""
    m = np.asarray(direction, dtype=np.float64).reshape(3, 3) @ np.diag(np.asarray(spacing, dtype=np.float64))
    idx = np.linalg.solve(m, np.asarray(point, dtype=np.float64) - np.asarray(origin, dtype=np.float64))
    return float(np.linalg.norm(m @ (idx - np.rint(idx))))


def lattice_check(mask, images, loaded: dict | None = None, other_grids=(), rel_tol: float = 0.01):
    """None when `mask`'s origin lies on the voxel lattice of one of the (name, path) images
    (within rel_tol of its smallest spacing, at least 1e-3 mm): a crop of that image's grid,
    or its own. Otherwise {"offset_mm", "nearest"}: the smallest distance and its image.
    other_grids: more (name, path) candidates, looked at only when no image matches and
    skipped when they are no image (a number, a SEG)."""
    best = None
    point = mask.GetOrigin()
    extra = ((n, p) for n, p in other_grids if p and looks_like_image(p))  # lazily: only when needed
    for name, p in itertools.chain(images, extra):
        try:
            if loaded and p in loaded:
                img = loaded[p]
                geo = (img.GetOrigin(), img.GetSpacing(), img.GetDirection())
            else:
                geo = header_geometry(p)
        except (RadlensError, RuntimeError):
            continue  # an unreadable image fails on its own, with its own message
        d = lattice_offset_mm(point, *geo)
        if d <= max(1e-3, rel_tol * float(min(geo[1]))):
            return None
        if best is None or d < best[0]:
            best = (d, name)
    if best is None:
        return None
    return {"offset_mm": round(best[0], 4), "nearest": best[1]}


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
