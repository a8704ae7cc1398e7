"""DICOM-SEG and RTSTRUCT masks: find them, list their segments, select, rasterise.

A mask cell of a manifest may name a SEG file, an RTSTRUCT file, or a folder holding
exactly one of them. Segments (SEG) and ROIs (RTSTRUCT) are both called segments here and
are selected by name (case-insensitive) or number (SEG segment number, RTSTRUCT ROI
number); several make a union.

Grids. A SEG carries its own frame geometry: it is read as a volume (highdicom) and placed
on a grid by nearest-neighbour resampling in physical space, which is exact when the grids
share a lattice (a SEG made on a series, placed back on it). Frames a SEG leaves out are
empty slices; a FRACTIONAL SEG keeps the voxels at 0.5 or more. An RTSTRUCT holds only
contours, so it is rasterised on a grid given to it.

RTSTRUCT rasterisation convention (documented in docs/radiomics.md):
- each CLOSED_PLANAR contour goes to the image slice nearest its plane (a contour not
  parallel to the slices is an error; contours beyond the first or last slice are
  dropped and counted; other contour types are ignored);
- the contours of one ROI on one slice combine by the even-odd rule: a voxel is in the
  ROI when its centre lies strictly inside an odd number of them (a contour inside
  another is a hole, one inside a hole an island), or on one of them (within 1e-3 voxel:
  tools that trace contours through the centres of boundary voxels, outer or around a
  hole, keep those voxels); several ROIs are a union.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import RadlensError

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
KINDS = {SEG_SOP_CLASS: "SEG", RTSTRUCT_SOP_CLASS: "RTSTRUCT"}
EDGE_TOL = 1e-3  # voxels: a centre this close to a contour's edge counts as inside


def is_dicom_file(path: str) -> bool:
    """A file with the DICOM preamble (`DICM` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _sop_class(path: str) -> str | None:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
    except Exception:  # noqa: BLE001 - not a readable DICOM file: not a DICOM mask
        return None
    uid = str(ds.get("SOPClassUID", ""))
    if uid in KINDS:
        return uid
    modality = str(ds.get("Modality", "")).upper()
    return {"SEG": SEG_SOP_CLASS, "RTSTRUCT": RTSTRUCT_SOP_CLASS}.get(modality)


def find_dicom_mask(path: str | None, what: str = "mask") -> tuple[str, str] | None:
    """(kind, file) when `path` is a SEG/RTSTRUCT file or a folder holding exactly one;
    None for anything else (label-map files, image series folders)."""
    if not path or not os.path.exists(path):
        return None
    if os.path.isfile(path):
        if not is_dicom_file(path):
            return None
        uid = _sop_class(path)
        return (KINDS[uid], path) if uid else None
    found = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full) and is_dicom_file(full):
            uid = _sop_class(full)
            if uid:
                found.append((KINDS[uid], full))
    if len(found) > 1:
        names = ", ".join(f"{os.path.basename(f)} ({k})" for k, f in found[:5])
        raise RadlensError(f"{what}: folder {path} holds {len(found)} SEG/RTSTRUCT objects ({names}); "
                           f"name one file")
    return found[0] if found else None


@dataclass
class DicomMask:
    """A SEG or RTSTRUCT object: its identity, what it references, and its segments."""

    kind: str  # SEG or RTSTRUCT
    path: str
    sop_instance_uid: str
    series_instance_uid: str
    referenced_series: tuple[str, ...]
    segments: dict[int, str]  # number -> name (SEG segment label, RTSTRUCT ROI name)
    dataset: object = field(default=None, repr=False)  # highdicom Segmentation or pydicom Dataset

    def describe(self) -> str:
        return ", ".join(f"#{n} {name!r}" for n, name in self.segments.items()) or "none"

    def select(self, numbers, names, what: str = "mask") -> list[tuple[int, str]]:
        """The (number, name) of the segments a selector picks; every segment when it has one.

        No selector and several segments, or a name/number that matches no segment, is an
        error listing the segments.
        """
        label = f"{what}: {self.kind} {self.path}"
        if not self.segments:
            raise RadlensError(f"{label} holds no segment")
        if not numbers and not names:
            if len(self.segments) == 1:
                return list(self.segments.items())
            raise RadlensError(f"{label} holds {len(self.segments)} segments ({self.describe()}); "
                               f"choose with COLUMN:NAME, names joined by '+'")
        picked: dict[int, str] = {}
        for n in numbers or ():
            if n not in self.segments:
                raise RadlensError(f"{label} has no segment number {n} (segments: {self.describe()})")
            picked[n] = self.segments[n]
        by_name: dict[str, list[int]] = {}
        for n, name in self.segments.items():
            by_name.setdefault(name.strip().lower(), []).append(n)
        for name in names or ():
            hits = by_name.get(name.strip().lower())
            if not hits:
                raise RadlensError(f"{label} has no segment named {name!r} (segments: {self.describe()})")
            picked.update({n: self.segments[n] for n in hits})
        return sorted(picked.items())

    def provenance(self, selected) -> dict:
        return {"kind": self.kind, "sop_instance_uid": self.sop_instance_uid,
                "series_instance_uid": self.series_instance_uid,
                "referenced_series": list(self.referenced_series),
                "segments": [name for _, name in selected], "segment_numbers": [n for n, _ in selected]}


_CACHE: dict[tuple, DicomMask] = {}


def read_dicom_mask(kind: str, path: str, what: str = "mask") -> DicomMask:
    """Parse a SEG (highdicom) or RTSTRUCT (pydicom); cached by path, size and mtime."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key in _CACHE:
        return _CACHE[key]
    try:
        out = _read_seg(path) if kind == "SEG" else _read_rtstruct(path)
    except RadlensError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged object: one line naming the file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RadlensError(f"{what}: cannot read {kind} {path}: {first}") from None
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[key] = out
    return out


def _read_seg(path: str) -> DicomMask:
    import highdicom as hd

    seg = hd.seg.segread(path)
    segments = {}
    for n in seg.get_segment_numbers():
        desc = seg.get_segment_description(n)
        segments[int(n)] = str(desc.segment_label)
    refs = []
    for item in seg.get("ReferencedSeriesSequence", []) or []:
        refs.append(str(item.SeriesInstanceUID))
    if not refs:
        refs = sorted({str(s) for _, s, _ in seg.get_source_image_uids()})
    return DicomMask("SEG", path, str(seg.SOPInstanceUID), str(seg.SeriesInstanceUID), tuple(refs), segments, seg)


def _read_rtstruct(path: str) -> DicomMask:
    import pydicom

    ds = pydicom.dcmread(path)
    segments = {int(r.ROINumber): str(r.get("ROIName", "")) for r in ds.get("StructureSetROISequence", []) or []}
    refs = []
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for st in fr.get("RTReferencedStudySequence", []) or []:
            for se in st.get("RTReferencedSeriesSequence", []) or []:
                refs.append(str(se.SeriesInstanceUID))
    return DicomMask("RTSTRUCT", path, str(ds.SOPInstanceUID), str(ds.get("SeriesInstanceUID", "")),
                     tuple(dict.fromkeys(refs)), segments, ds)


# ------------------------------------------------------------------ SEG

def seg_volume(mask: DicomMask, numbers, what: str = "mask"):
    """The union of SEG segments `numbers` as a uint8 SimpleITK image on the SEG's own frame
    geometry (right-handed), or None when those segments have no frame at all."""
    import SimpleITK as sitk

    seg = mask.dataset
    present = _segments_with_frames(seg)
    numbers = [n for n in numbers if n in present]
    if not numbers:
        return None
    try:
        vol = seg.get_volume(segment_numbers=numbers, combine_segments=False, rescale_fractional=True)
    except Exception as e:  # noqa: BLE001 - frames that form no volume
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RadlensError(f"{what}: SEG {mask.path}: its frames do not form a volume: {first}") from None
    arr = np.asarray(vol.array)
    if arr.ndim == 4:
        arr = arr.max(axis=-1)
    fractional = str(seg.SegmentationType).upper() == "FRACTIONAL"
    sel = (arr >= 0.5) if fractional else (arr > 0)
    affine = np.asarray(vol.affine, dtype=np.float64)  # (slice, row, column) -> LPS
    cols = [affine[:3, 2], affine[:3, 1], affine[:3, 0]]  # x: column, y: row, z: slice
    spacing = [float(np.linalg.norm(c)) for c in cols]
    direction = np.stack([c / s for c, s in zip(cols, spacing)], axis=1)
    origin = affine[:3, 3].copy()
    if np.linalg.det(direction) < 0:  # slices run against the row x column normal: flip them
        origin = origin + cols[2] * (sel.shape[0] - 1)
        direction[:, 2] = -direction[:, 2]
        sel = sel[::-1]
    img = sitk.GetImageFromArray(np.ascontiguousarray(sel.astype(np.uint8)))
    img.SetSpacing(spacing)
    img.SetOrigin([float(o) for o in origin])
    img.SetDirection([float(d) for d in direction.ravel()])
    return img


def _segments_with_frames(seg) -> set[int]:
    out = set()
    for item in seg.get("PerFrameFunctionalGroupsSequence", []) or []:
        sis = item.get("SegmentIdentificationSequence")
        if sis:
            out.add(int(sis[0].ReferencedSegmentNumber))
    if not out and "SharedFunctionalGroupsSequence" in seg:
        sis = seg.SharedFunctionalGroupsSequence[0].get("SegmentIdentificationSequence")
        if sis:
            out.add(int(sis[0].ReferencedSegmentNumber))
    return out


# ------------------------------------------------------------------ RTSTRUCT

def rtstruct_mask(mask: DicomMask, numbers, grid, what: str = "mask") -> tuple[object, dict]:
    """Rasterise RTSTRUCT ROIs `numbers` on `grid` (a SimpleITK image); see the module's
    convention. Returns (uint8 image, {"contours": used, "dropped": outside the grid})."""
    import SimpleITK as sitk
    from matplotlib.path import Path

    ds = mask.dataset
    size = grid.GetSize()
    nx, ny, nz = size
    origin = np.array(grid.GetOrigin())
    m = np.array(grid.GetDirection()).reshape(3, 3) @ np.diag(grid.GetSpacing())
    to_index = np.linalg.inv(m)
    out = np.zeros((nz, ny, nx), dtype=bool)
    wanted = set(numbers)
    used = dropped = 0
    for roi in ds.get("ROIContourSequence", []) or []:
        if int(roi.ReferencedROINumber) not in wanted:
            continue
        per_slice: dict[int, list[np.ndarray]] = {}
        for c in roi.get("ContourSequence", []) or []:
            if str(c.get("ContourGeometricType", "CLOSED_PLANAR")).upper() != "CLOSED_PLANAR":
                continue
            pts = np.asarray(c.ContourData, dtype=np.float64).reshape(-1, 3)
            if len(pts) < 3:
                continue
            idx = (pts - origin) @ to_index.T  # continuous (i, j, k)
            k = idx[:, 2]
            kr = int(np.rint(k.mean()))
            if np.ptp(k) > 0.1:
                name = mask.segments.get(int(roi.ReferencedROINumber))
                raise RadlensError(f"{what}: RTSTRUCT {mask.path}: a contour of ROI {name!r} is not parallel "
                                   f"to the image slices (spans {np.ptp(k):.2f} slices)")
            if abs(k.mean() - kr) > 0.5 + 1e-6 or not 0 <= kr < nz:
                dropped += 1
                continue
            per_slice.setdefault(kr, []).append(idx[:, :2])
            used += 1
        roi_mask = np.zeros_like(out)
        for kr, polys in per_slice.items():
            sl = roi_mask[kr]
            on_edge = np.zeros_like(sl)
            for poly in polys:
                lo = np.maximum(np.floor(poly.min(axis=0) - EDGE_TOL).astype(int), 0)
                hi = np.minimum(np.ceil(poly.max(axis=0) + EDGE_TOL).astype(int), [nx - 1, ny - 1])
                if np.any(hi < lo):
                    continue
                ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
                x, y = poly[:, 0], poly[:, 1]
                area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
                # matplotlib grows a counter-clockwise polygon for a positive radius, shrinks it for a negative one
                grow = EDGE_TOL if area >= 0 else -EDGE_TOL
                path, pts = Path(poly), np.column_stack([ii.ravel(), jj.ravel()])
                strict = path.contains_points(pts, radius=-grow).reshape(ii.shape)
                near = path.contains_points(pts, radius=grow).reshape(ii.shape) & ~strict
                sl[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] ^= strict
                on_edge[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] |= near
            sl |= on_edge  # a centre on a contour (outer or hole) is on the ROI's boundary: in it
        out |= roi_mask
    img = sitk.GetImageFromArray(out.astype(np.uint8))
    img.CopyInformation(grid)
    return img, {"contours": used, "dropped": dropped}
