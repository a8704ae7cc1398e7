"""Preprocessing shared by `embed` and `finetune` (ProFound-style), and the case dataset.

Every modality is resampled in physical space onto ONE grid: the requested spacing
(x, y, z mm), a box of `crop` voxels (x, y, z) centred on the centre of the mask's bounding
box, with the axes of the first modality (`orient native`) or their nearest permutation and
flips that point to R,A,S or L,P,S (`orient RAS|LPS`, what MONAI's Orientationd and
nibabel's as_closest_canonical do: the scan's own tilt is kept, no world-aligned grid).
The box is snapped to the lattice of the first modality resampled at that spacing with its
outer edge kept (voxel corners aligned at its first voxel after orientation, as MONAI's
Spacingd), so the same scan stored with another voxel axis order or with rounding in its
geometry gives the same planes. A box plane is inside a
sequence only between its first and last voxel centres (1e-3 voxel tolerance): a box taller
than the scan is padded, never filled by extrapolating the edge slice.

Sequences on other grids (ADC/DWI at 2x2x3 mm on a smaller field of view, masks drawn on
the T2 grid, DICOM series) all land on that grid; where a sequence's field of view ends,
the box is padded (0 after normalisation).

Normalisation, per channel (`norm`), with statistics over the non-zero voxels of the box
that lie inside that sequence (`norm_region box`, the default: a case's channels do not
depend on how much body the field of view holds) or of the whole original volume
(`norm_region volume`, like MONAI's NormalizeIntensity(nonzero=True) on the full scan):
- zscore: (x - mean) / std;
- percentile: (x - p0.5) / (p99.5 - p0.5) clipped to [0, 1];
- window:LO,HI: (x - LO) / (HI - LO) clipped to [0, 1] (fixed, e.g. CT -1000,400);
- none: the resampled values as they are.

The tensor is (C, z, y, x) of the box's axes (`layout zyx`, the built-in encoder's) or
(C, x, y, z) (`layout xyz`, MONAI/NIfTI-trained models).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from radlens_cli import log
from radlens_cli.errors import WIRE_PREFIX, ParameterError, ParameterMessage, RadlensError
from radlens_cli.io.files import atomic_path, pid_temporary, sweep_stale_temporaries
from radlens_cli.io.images import load_mask, read_image
from radlens_cli.io.manifest import MaskSpec, parse_mask_spec
from radlens_cli.provenance import sha256_file

ORIENTS = ("native", "RAS", "LPS")
LAYOUTS = ("zyx", "xyz")
NORM_REGIONS = ("box", "volume")
# 2: crop recorded as x,y,z (1 recorded it as D,H,W = z,y,x), orientation, layout, region
PREPROCESS_VERSION = 2
# Defaults when neither the command line nor the encoder's record says (the one home of them)
DEFAULT_SPACING = (0.5, 0.5, 1.0)  # x, y, z mm
DEFAULT_CROP = (224, 224, 64)  # x, y, z voxels (ProFound's 64x224x224 D,H,W box)
DEFAULT_NORM = "zscore"
DEFAULT_ORIENT = "native"
DEFAULT_LAYOUT = "zyx"
DEFAULT_NORM_REGION = "box"
# The segmentation target's array in a cached case (.npz); its on-disk name predates `seg_target`
SEG_TARGET_NPZ_KEY = "extra_mask"
INSIDE_TOL = 1e-3  # voxels: a box plane this close to a sequence's edge voxel centre is inside


def parse_norm(norm: str) -> tuple[str, float | None, float | None]:
    """('zscore'|'percentile'|'none'|'window', lo, hi) of a --norm value."""
    text = str(norm).strip()
    if text in ("zscore", "percentile", "none"):
        return text, None, None
    if text.startswith("window:"):
        try:
            lo, hi = (float(v) for v in text[len("window:"):].split(","))
        except ValueError:
            lo = hi = float("nan")
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ParameterError(f"{{norm}} window:LO,HI needs two numbers LO < HI, got {text!r}", "norm")
        return "window", lo, hi
    raise ParameterError(f"{{norm}} must be zscore, percentile, none or window:LO,HI, got {text!r}", "norm")


def crop_from_record(rec: dict, default=DEFAULT_CROP) -> tuple[int, int, int]:
    """The x,y,z box of a recorded preprocessing dict; records before version 2 hold D,H,W."""
    crop = rec.get("crop")
    if crop is None:
        return tuple(default)
    crop = tuple(int(c) for c in crop)
    if rec.get("crop_order") == "x,y,z" or int(rec.get("version", 1)) >= 2:
        return crop
    return crop[::-1]


class CaseFailure(RadlensError):
    """One case could not be preprocessed. The message is the usual one line; `what` names the
    input at fault (a modality column, or `mask <spec>`), `path` its file and `reason` the rest."""

    def __init__(self, message: str, case_id: str = "", what: str = "", path: str | None = None,
                 reason: str = ""):
        # defaults: a DataLoader worker re-raises an exception as type(e)(text) in the main process
        super().__init__(message)
        self.case_id, self.what, self.path, self.reason = str(case_id), what, path or "", reason or message

    def record(self) -> dict:
        """The failure as a row of `failures` (the fields of extract-radiomics')."""
        return {"case_id": self.case_id, "modality": self.what, "path": self.path, "reason": self.reason,
                "status": "failed"}


@dataclass
class PreprocessConfig:
    """What a volume is made of: modalities (channel order), ROI mask, spacing, box, normalisation."""

    modalities: list[str]
    mask: MaskSpec
    spacing: tuple[float, float, float] = DEFAULT_SPACING  # x, y, z in mm
    crop: tuple[int, int, int] = DEFAULT_CROP  # x, y, z voxels
    norm: str = DEFAULT_NORM
    orient: str = DEFAULT_ORIENT
    layout: str = DEFAULT_LAYOUT
    norm_region: str = DEFAULT_NORM_REGION
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.mask, str):
            self.mask = parse_mask_spec(self.mask)
        self.modalities = list(self.modalities)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.crop = tuple(int(c) for c in self.crop)
        if len(self.spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ParameterError(f"{{spacing}} needs three positive numbers (x,y,z mm), got {self.spacing}", "spacing")
        if len(self.crop) != 3 or any(c < 1 for c in self.crop):
            raise ParameterError(f"{{crop}} needs three positive integers (x,y,z voxels), got {self.crop}", "crop")
        self.norm = str(self.norm).strip()
        parse_norm(self.norm)
        orient = {o.lower(): o for o in ORIENTS}.get(str(self.orient).lower())
        if orient is None:
            raise ParameterError(f"{{orient}} must be one of {', '.join(ORIENTS)}, got {self.orient!r}", "orient")
        self.orient = orient
        if self.layout not in LAYOUTS:
            raise ParameterError(f"{{layout}} must be one of {', '.join(LAYOUTS)}, got {self.layout!r}", "layout")
        if self.norm_region not in NORM_REGIONS:
            raise ParameterError(f"{{norm_region}} must be one of {', '.join(NORM_REGIONS)}, got {self.norm_region!r}",
                                 "norm_region")
        if not self.modalities:
            raise ParameterError("{modalities}: give at least one modality column", "modalities")

    def to_dict(self) -> dict:
        region = ("box voxels inside each sequence's field of view, non-zero" if self.norm_region == "box"
                  else "the whole original volume of each sequence, non-zero voxels")
        return {"version": PREPROCESS_VERSION, "modalities": list(self.modalities), "mask": str(self.mask),
                "spacing": list(self.spacing), "crop": list(self.crop), "crop_order": "x,y,z",
                "norm": self.norm, "norm_region": self.norm_region, "orient": self.orient, "layout": self.layout,
                "resample": ("linear (images), nearest (masks), physical space, axes of the first modality"
                             + ("" if self.orient == "native" else f" permuted/flipped to {self.orient}")
                             + ", box snapped to its lattice, no extrapolation past a sequence"),
                "normalisation_region": region}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(modalities=list(d["modalities"]), mask=parse_mask_spec(str(d["mask"])),
                   spacing=tuple(d.get("spacing", DEFAULT_SPACING)), crop=crop_from_record(d),
                   norm=d.get("norm", DEFAULT_NORM), orient=d.get("orient", DEFAULT_ORIENT),
                   layout=d.get("layout", DEFAULT_LAYOUT), norm_region=d.get("norm_region", DEFAULT_NORM_REGION))

    def tensor_shape(self) -> tuple[int, ...]:
        """(C, *spatial) of the volume this config makes, in its layout."""
        x, y, z = self.crop
        return (len(self.modalities),) + ((z, y, x) if self.layout == "zyx" else (x, y, z))

    def key(self) -> str:
        """Hash of everything that changes the preprocessed volume."""
        d = self.to_dict()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def _sitk():
    import SimpleITK as sitk

    return sitk


def oriented_axes(direction: np.ndarray, orient: str) -> tuple[list[int], list[int]]:
    """(perm, sign): box axis w is sign[w] * the image's own axis perm[w].

    native keeps the image's axes; RAS/LPS take, greedily by the largest direction cosine,
    the image axis closest to each world axis and flip it to point to R,A,S or L,P,S (ITK's
    physical space is LPS), like nibabel's io_orientation / MONAI's Orientationd.
    """
    if orient == "native":
        return [0, 1, 2], [1, 1, 1]
    target = {"RAS": (-1.0, -1.0, 1.0), "LPS": (1.0, 1.0, 1.0)}[orient]
    a = np.abs(direction).astype(np.float64)
    perm, sign = [-1, -1, -1], [1, 1, 1]
    for _ in range(3):
        w, ax = np.unravel_index(int(np.argmax(a)), a.shape)
        perm[w] = int(ax)
        sign[w] = int(np.sign(direction[w, ax]) * target[w]) or 1
        a[w, :] = -1.0
        a[:, ax] = -1.0
    return perm, sign


def box_grid(first_image, mask, spacing, crop, orient: str = "native"):
    """(origin, direction, size_xyz, centre) of the box: `crop` (x, y, z) voxels at `spacing`,
    centred on the centre of the mask's bounding box, with the first image's axes oriented
    by `orient`, snapped to the lattice of that image resampled at `spacing`."""
    sitk = _sitk()
    arr = sitk.GetArrayViewFromImage(mask)
    nz = np.nonzero(arr)
    lo = [int(a.min()) for a in nz]  # z, y, x
    hi = [int(a.max()) for a in nz]
    centre_idx = [(lo[2] + hi[2]) / 2.0, (lo[1] + hi[1]) / 2.0, (lo[0] + hi[0]) / 2.0]  # x, y, z
    centre = np.array(mask.TransformContinuousIndexToPhysicalPoint(centre_idx))
    img_dir = np.array(first_image.GetDirection(), dtype=np.float64).reshape(3, 3)
    perm, sign = oriented_axes(img_dir, orient)
    direction = img_dir[:, perm] * np.asarray(sign, dtype=np.float64)[None, :]
    # the oriented image's first voxel: the far end of every flipped axis
    size_img = first_image.GetSize()
    corner = [0.0, 0.0, 0.0]
    for w in range(3):
        if sign[w] < 0:
            corner[perm[w]] = float(size_img[perm[w]] - 1)
    anchor = np.array(first_image.TransformContinuousIndexToPhysicalPoint(corner))
    size_xyz = np.array(crop, dtype=np.int64)
    spacing = np.array(spacing, dtype=np.float64)
    # the lattice of the scan resampled at `spacing` with its outer edge kept (voxel corners
    # aligned, as MONAI's Spacingd): its first voxel centre is half a new voxel inside the
    # scan's first voxel's outer corner; with the scan's own spacing, that is its first voxel
    sp_img = np.array([first_image.GetSpacing()[perm[w]] for w in range(3)])
    anchor = anchor + direction @ ((spacing - sp_img) / 2.0)
    origin = centre - direction @ (spacing * (size_xyz - 1) / 2.0)
    steps = np.linalg.solve(direction * spacing[None, :], origin - anchor)
    # half-way ties are common (a mask of even width): break them upwards with a tolerance so
    # rounding noise in the stored geometry cannot move the box by a voxel
    origin = anchor + direction @ (spacing * np.floor(steps + 0.5 + INSIDE_TOL))
    return origin, direction, size_xyz, centre


def _resample(img, origin, direction, size_xyz, spacing, interp: str, default: float):
    sitk = _sitk()
    ip = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interp]
    return sitk.Resample(img, [int(s) for s in size_xyz], sitk.Transform(), ip,
                         [float(o) for o in origin], [float(s) for s in spacing],
                         [float(d) for d in direction.ravel()], default, img.GetPixelID())


def inside(img, origin, direction, size_xyz, spacing, tol: float = INSIDE_TOL) -> np.ndarray:
    """bool (z, y, x) array of the box: the voxel lies between `img`'s first and last voxel
    centres on every axis (within `tol` voxels), i.e. needs no extrapolation."""
    o_img = np.array(img.GetOrigin(), dtype=np.float64)
    m_img = np.array(img.GetDirection(), dtype=np.float64).reshape(3, 3) * np.array(img.GetSpacing())[None, :]
    to_idx = np.linalg.inv(m_img)
    a = to_idx @ direction @ np.diag(np.asarray(spacing, dtype=np.float64))
    c = to_idx @ (np.asarray(origin, dtype=np.float64) - o_img)
    nx, ny, nz = (int(s) for s in size_xyz)
    i = np.arange(nx, dtype=np.float64)[None, None, :]
    j = np.arange(ny, dtype=np.float64)[None, :, None]
    k = np.arange(nz, dtype=np.float64)[:, None, None]
    out = np.ones((nz, ny, nx), dtype=bool)
    for d, n in enumerate(img.GetSize()):
        v = c[d] + a[d, 0] * i + a[d, 1] * j + a[d, 2] * k
        out &= (v >= -tol) & (v <= n - 1 + tol)
    return out


def normalise(arr: np.ndarray, valid: np.ndarray, norm: str, where: str,
              stats_values: np.ndarray | None = None) -> np.ndarray:
    """Per-channel normalisation; invalid voxels become 0. Statistics come from the valid
    non-zero voxels of `arr`, or from `stats_values` (the non-zero voxels of another region)."""
    kind, w_lo, w_hi = parse_norm(norm)
    out = np.zeros(arr.shape, dtype=np.float32)
    if kind in ("zscore", "percentile"):
        if stats_values is None:
            sel = valid & (arr != 0)
            if not sel.any():
                sel = valid
            vals = arr[sel].astype(np.float64)
        else:
            vals = np.asarray(stats_values, dtype=np.float64)
        if vals.size == 0:
            raise RadlensError(f"{where}: no voxels to compute the normalisation from")
    if kind == "zscore":
        mean, std = vals.mean(), vals.std()
        if not np.isfinite(std) or std < 1e-8:
            std = 1.0
        out[valid] = ((arr[valid] - mean) / std).astype(np.float32)
    elif kind == "percentile":
        lo, hi = np.percentile(vals, [0.5, 99.5])
        scale = hi - lo if hi - lo > 1e-8 else 1.0
        out[valid] = np.clip((arr[valid] - lo) / scale, 0.0, 1.0).astype(np.float32)
    elif kind == "window":
        out[valid] = np.clip((arr[valid] - w_lo) / (w_hi - w_lo), 0.0, 1.0).astype(np.float32)
    else:
        out[valid] = arr[valid].astype(np.float32)
    if not np.isfinite(out).all():
        raise RadlensError(f"{where}: non-finite values after normalisation")
    return out


def _volume_stats(img) -> np.ndarray:
    """Non-zero voxels of a whole image (all voxels if none is non-zero), for norm_region volume."""
    arr = _sitk().GetArrayViewFromImage(img)
    vals = np.asarray(arr[arr != 0], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    return vals if vals.size else np.asarray(arr, dtype=np.float64).ravel()


def to_layout(arr: np.ndarray, layout: str) -> np.ndarray:
    """A (..., z, y, x) array in `layout` order (xyz transposes the three spatial axes)."""
    if layout == "zyx":
        return arr
    return np.ascontiguousarray(np.swapaxes(arr, -1, -3))


def _read_seg_target(path: str, spec: MaskSpec | None, what: str, images=(), loaded=None,
                     strict_geometry: bool = False):
    """Segmentation target mask and its record; an empty one is allowed (a patient without
    a lesion)."""
    return load_mask(path, spec if spec is not None else MaskSpec(""), what, images=images, loaded=loaded,
                     allow_empty=True, strict_geometry=strict_geometry)


def _tell(case_id: str, info: dict) -> None:
    if info.get("warning"):
        log.warn(f"case {case_id}: {info['warning']}")
    for note in info.get("notes", []):
        log.info(f"case {case_id}: {note}")


def preprocess_case(image_paths: list[str], mask_path: str, cfg: PreprocessConfig,
                    seg_target_path: str | None = None, seg_target_spec: MaskSpec | None = None,
                    case_id: str = "", strict_geometry: bool = False) -> dict:
    """volume float32 (C, *box), mask uint8 (*box), seg_target uint8 (*box) or None, where box is
    (z, y, x) or (x, y, z) of the box's axes by cfg.layout; and inputs: a JSON record of the
    DICOM objects read and any geometry warning ("" if none); grid: the box in physical space
    (origin, direction cosines row-major, size x,y,z, spacing), which maps results on the box
    back onto an image.

    A mask whose origin lies on none of the images' voxel lattices is a warning (an error
    with strict_geometry)."""
    sitk = _sitk()
    tag = f"case {case_id}: " if case_id else ""
    if len(image_paths) != len(cfg.modalities):
        raise ValueError("one image path per modality")
    mask_what = f"mask {cfg.mask}"

    def failed(err: RadlensError, what: str, path: str | None, label: str | None = None) -> CaseFailure:
        msg = str(err)
        prefix = f"{tag}{label or what}: "
        return CaseFailure(msg, case_id, what, path, msg[len(prefix):] if msg.startswith(prefix) else msg)

    case_images = list(zip(cfg.modalities, image_paths))
    loaded: dict = {}  # the images, read first: the mask's grid check and a DICOM mask's grid use them
    images = []
    for m, p in case_images:
        try:
            loaded[p] = read_image(p, f"{tag}{m}") if p not in loaded else loaded[p]
        except RadlensError as e:
            raise failed(e, m, p) from None
        images.append(loaded[p])
    try:
        mask, info = load_mask(mask_path, cfg.mask, what=f"{tag}{mask_what}".strip(), images=case_images,
                               loaded=loaded, strict_geometry=strict_geometry)
    except RadlensError as e:
        raise failed(e, mask_what, mask_path) from None
    _tell(case_id, info)
    origin, direction, size_xyz, centre = box_grid(images[0], mask, cfg.spacing, cfg.crop, cfg.orient)
    grid = (origin, direction, size_xyz, cfg.spacing)
    channels = []
    for img, m, p in zip(images, cfg.modalities, image_paths):
        res = _resample(img, origin, direction, size_xyz, cfg.spacing, "linear", float("nan"))
        arr = sitk.GetArrayFromImage(res)
        valid = np.isfinite(arr) & inside(img, *grid)
        if not valid.any():
            raise CaseFailure(f"{tag}{m}: image {p} does not overlap the box around the mask {mask_path} "
                              f"(centre {np.round(centre, 1).tolist()} mm); wrong image or mask?", case_id, m, p,
                              f"does not overlap the box around the mask {mask_path} "
                              f"(centre {np.round(centre, 1).tolist()} mm); wrong image or mask?")
        try:
            stats = _volume_stats(img) if cfg.norm_region == "volume" else None
            channels.append(normalise(np.where(valid, arr, 0.0).astype(np.float32), valid, cfg.norm,
                                      f"{tag}{m} ({p})", stats_values=stats))
        except RadlensError as e:
            raise failed(e, m, p, f"{m} ({p})") from None
    roi = sitk.GetArrayFromImage(_resample(mask, origin, direction, size_xyz, cfg.spacing, "nearest", 0))
    roi = roi * inside(mask, *grid)
    extra = None
    if seg_target_path is not None:
        try:
            em, em_info = _read_seg_target(seg_target_path, seg_target_spec, f"{tag}segmentation mask",
                                           case_images, loaded, strict_geometry)
        except RadlensError as e:
            raise failed(e, "segmentation mask", seg_target_path) from None
        _tell(case_id, {k: v for k, v in em_info.items() if k in ("warning", "notes")})
        info.update({f"segmentation_{k}": v for k, v in em_info.items() if k in ("mask", "geometry", "warning")})
        extra = sitk.GetArrayFromImage(_resample(em, origin, direction, size_xyz, cfg.spacing, "nearest", 0))
        extra = to_layout((extra * inside(em, *grid)).astype(np.uint8), cfg.layout)
    return {"volume": to_layout(np.stack(channels, 0).astype(np.float32), cfg.layout),
            "mask": to_layout(roi.astype(np.uint8), cfg.layout), "seg_target": extra,
            "inputs": json.dumps(info, sort_keys=True) if info else "",
            "grid": {"origin": [float(v) for v in origin], "direction": [float(v) for v in direction.ravel()],
                     "size": [int(v) for v in size_xyz], "spacing": [float(v) for v in cfg.spacing]}}


def _file_hash(path: str | None) -> str:
    if path is None or not os.path.exists(path):
        return "missing"
    return sha256_file(path)


def _safe_name(case_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(case_id))[:80]
    return name or "case"


def save_npz_atomic(path: str, **arrays) -> None:
    """A volume-cache entry, written under a temporary named after this process (a worker
    killed mid-write leaves `<path>.<pid>.tmp`, which the next run's CaseDataset sweeps)."""
    with atomic_path(path, tmp=pid_temporary(path)) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def worker_init(worker_id: int) -> None:
    """DataLoader worker_init_fn: one torch thread, a fair share of cores for SimpleITK,
    so N workers do not oversubscribe the machine."""
    info = torch.utils.data.get_worker_info()
    n_workers = info.num_workers if info is not None else 1
    torch.set_num_threads(1)
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(max(1, (os.cpu_count() or 1) // max(1, n_workers)))
    except Exception:  # noqa: BLE001 - a tuning knob only
        pass


def unwrap_worker_error(e: BaseException) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker."""
    text = str(e).strip()
    if "Original Traceback" in text:
        lines = [ln for ln in text.splitlines() if not ln.startswith(WIRE_PREFIX)]
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def worker_error(e: BaseException) -> RadlensError:
    """The error to raise for one re-raised from a DataLoader worker: a ParameterError with
    its parameters again (CaseDataset notes them), else a RadlensError with the original
    one-line message and the error's exit code."""
    found = ParameterError.from_traceback_text(str(e))
    if found is not None:
        return found
    return RadlensError(unwrap_worker_error(e), getattr(e, "exit_code", None))


class CaseDataset(Dataset):
    """Preprocessed cases of a manifest, with an optional on-disk float16 cache.

    Items: dict(index, case_id, volume float32 tensor (C, *box), target, seg_target, inputs).
    target: float tensor (NaN when no targets were given); seg_target: uint8 (*box) tensor of the
    segmentation mask (empty tensor when seg_target is None); inputs: the JSON record of the
    case's DICOM objects and geometry warning ("" for none; see io.images.load_mask).
    Volumes are rounded to float16 whether or not a cache is used, so a run that reads the
    cache gives exactly what a run that wrote it gave.
    The cache key is the sha256 of every input file plus the preprocessing settings, so an
    edited image or changed option never reads a stale volume.
    With failures_as_records (embed), a case that cannot be preprocessed yields
    dict(index, case_id, failure=<failures row>) instead of raising, so one bad case neither
    stops the batch nor kills a DataLoader worker; batch such items with `collate_cases`.
    Nothing is cached for a failed case.
    """

    def __init__(self, manifest, cfg: PreprocessConfig, cache_dir: str | None = None,
                 targets: np.ndarray | None = None, seg_target: MaskSpec | None = None,
                 failures_as_records: bool = False, strict_geometry: bool = False):
        manifest.require_images(cfg.modalities, cfg.mask)
        if seg_target is not None:
            manifest.require_columns([seg_target.column], "segmentation mask")
        self.cfg = cfg
        self.case_ids = [str(c) for c in manifest.case_ids]
        self.images = list(zip(*[manifest.paths(m) for m in cfg.modalities]))
        self.masks = manifest.paths(cfg.mask.column)
        self.seg_target = seg_target
        self.seg_target_paths = (manifest.paths(seg_target.column) if seg_target is not None
                                 else [None] * len(self.case_ids))
        self.targets = None if targets is None else np.asarray(targets)
        if self.targets is not None and len(self.targets) != len(self.case_ids):
            raise ValueError("one target per case")
        self.cache_dir = cache_dir
        self.failures_as_records = failures_as_records
        self.strict_geometry = strict_geometry
        if cache_dir:
            try:
                os.makedirs(cache_dir, exist_ok=True)
            except OSError as e:
                raise RadlensError(f"cannot create cache folder {cache_dir}: {e}") from None
            sweep_stale_temporaries(cache_dir)  # left by a worker killed while writing an entry

    def __len__(self) -> int:
        return len(self.case_ids)

    def cache_key(self, i: int) -> str:
        h = hashlib.sha256()
        h.update(self.cfg.key().encode())
        for p in list(self.images[i]) + [self.masks[i]]:
            h.update(_file_hash(p).encode())
        if self.seg_target is not None:
            h.update(str(self.seg_target).encode())
            h.update(_file_hash(self.seg_target_paths[i]).encode())
        if self.strict_geometry:  # a volume kept by a lenient run must not skip the strict check
            h.update(b"strict-geometry")
        return h.hexdigest()

    def cache_path(self, i: int) -> str | None:
        if not self.cache_dir:
            return None
        return os.path.join(self.cache_dir, f"{_safe_name(self.case_ids[i])}-{self.cache_key(i)[:24]}.npz")

    def load(self, i: int) -> dict:
        """Preprocessed arrays of case i (volume float16, mask, seg_target) via the cache."""
        path = self.cache_path(i)
        if path is not None and os.path.exists(path):
            try:
                with np.load(path) as z:
                    out = {"volume": z["volume"], "mask": z["mask"],
                           "seg_target": z[SEG_TARGET_NPZ_KEY] if SEG_TARGET_NPZ_KEY in z.files else None,
                           "inputs": str(z["inputs"]) if "inputs" in z.files else ""}
                return out
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                pass
        cid = self.case_ids[i]
        try:
            res = preprocess_case(list(self.images[i]), self.masks[i], self.cfg,
                                  self.seg_target_paths[i] if self.seg_target is not None else None,
                                  self.seg_target, case_id=cid, strict_geometry=self.strict_geometry)
        except RadlensError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CaseFailure(f"case {cid}: preprocessing failed: {type(e).__name__}: {e}", cid, "preprocessing",
                              "", f"preprocessing failed: {type(e).__name__}: {e}") from None
        out = {"volume": res["volume"].astype(np.float16), "mask": res["mask"], "seg_target": res["seg_target"],
               "inputs": res["inputs"], "grid": res["grid"]}  # grid: the box (saliency maps go back through it)
        if path is not None:
            arrays = {"volume": out["volume"], "mask": out["mask"], "inputs": np.array(res["inputs"])}
            if out["seg_target"] is not None:
                arrays[SEG_TARGET_NPZ_KEY] = out["seg_target"]
            save_npz_atomic(path, **arrays)
        return out

    def case_inputs(self) -> dict:
        """case_id -> the record of its DICOM objects and geometry warning, read from the
        cache (cases not in the cache, or with nothing to record, are left out)."""
        out = {}
        for i, cid in enumerate(self.case_ids):
            path = self.cache_path(i)
            if path is None or not os.path.exists(path):
                continue
            try:
                with np.load(path) as z:
                    text = str(z["inputs"]) if "inputs" in z.files else ""
                if text:
                    out[cid] = json.loads(text)
            except Exception:  # noqa: BLE001 - a damaged cache entry records nothing
                pass
        return out

    def failure_record(self, i: int, e: BaseException) -> dict:
        if isinstance(e, CaseFailure):
            return e.record()
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        if not isinstance(e, RadlensError):
            text = f"{type(e).__name__}: {text}" if text else type(e).__name__
        return {"case_id": self.case_ids[i], "modality": "preprocessing", "path": getattr(e, "filename", None) or "",
                "reason": text, "status": "failed"}

    def __getitem__(self, i: int) -> dict:
        try:
            return self._item(i)
        except ParameterError as e:
            if torch.utils.data.get_worker_info() is not None:
                # the main process gets type(e)(traceback text): the note carries the parameters
                e.add_note(e.wire_note())
            raise

    def _item(self, i: int) -> dict:
        if self.failures_as_records:
            try:
                arrs = self.load(i)
            except Exception as e:  # noqa: BLE001 - reported against the case; the batch goes on
                return {"index": i, "case_id": self.case_ids[i], "failure": self.failure_record(i, e)}
        else:
            arrs = self.load(i)
        target = float("nan") if self.targets is None else self.targets[i]
        seg_target = (torch.from_numpy(arrs["seg_target"].astype(np.uint8)) if arrs["seg_target"] is not None
               else torch.zeros(0, dtype=torch.uint8))
        return {"index": i, "case_id": self.case_ids[i],
                "volume": torch.from_numpy(arrs["volume"].astype(np.float32)),
                "target": torch.as_tensor(target), "seg_target": seg_target, "inputs": arrs.get("inputs", "")}


def collate_cases(items: list[dict]) -> dict:
    """DataLoader collate_fn for a CaseDataset with failures_as_records: the cases that were
    preprocessed, stacked (index, case_id, volume; volume None when none was), and the
    failures rows of the others."""
    from torch.utils.data import default_collate

    ok = [it for it in items if "failure" not in it]
    out = {"index": [int(it["index"]) for it in ok], "case_id": [it["case_id"] for it in ok],
           "volume": default_collate([it["volume"] for it in ok]) if ok else None,
           "failures": [it["failure"] for it in items if "failure" in it],
           "inputs": {it["case_id"]: json.loads(it["inputs"]) for it in ok if it.get("inputs")}}
    return out


def preprocessing_config(modalities, mask, spacing, crop, norm, recorded: dict | None, orient: str | None = None,
                         layout: str | None = None, norm_region: str | None = None, warn=None):
    """The run's PreprocessConfig: the given values first, then the checkpoint's record, then the
    defaults above (the one place they are merged).

    spacing and crop are (x, y, z) tuples (parse a command line's "x,y,z" first, e.g.
    commands.options.parse_triple), or None for the record's; a record written before crops were
    x,y,z (preprocessing version 1, D,H,W) is read in its own order. `warn(message)` hears
    about modalities other than the recorded ones (a ParameterMessage naming `modalities`).
    """
    rec = recorded or {}
    sp = tuple(spacing) if spacing else tuple(rec.get("spacing", DEFAULT_SPACING))
    cr = tuple(crop) if crop else crop_from_record(rec)
    nm = norm or rec.get("norm", DEFAULT_NORM)
    if rec.get("modalities") and list(rec["modalities"]) != list(modalities) and warn:
        warn(ParameterMessage(f"the encoder was trained on modalities {','.join(rec['modalities'])} "
                              f"(channel order matters); {{modalities}} gives {','.join(modalities)}", "modalities"))
    return PreprocessConfig(modalities=list(modalities), mask=mask, spacing=sp, crop=cr, norm=nm,
                            orient=orient or rec.get("orient", DEFAULT_ORIENT),
                            layout=layout or rec.get("layout", DEFAULT_LAYOUT),
                            norm_region=norm_region or rec.get("norm_region", DEFAULT_NORM_REGION))
