"""Preprocessing shared by `embed` and `finetune` (ProFound-style), and the case dataset.

Every modality is resampled in physical space onto ONE grid: the requested spacing
(x, y, z mm), the orientation of the first modality, and a box of `crop` voxels (D, H, W)
centred on the centre of the mask's bounding box. Sequences on other grids (ADC/DWI at
2x2x3 mm on a smaller field of view, masks drawn on the T2 grid, DICOM series) all land on
that grid; where a sequence's field of view ends, the box is padded.

Normalisation, per channel, over the box voxels that lie inside that sequence's field of
view and are non-zero (ProFound normalises the non-zero voxels channel-wise, MONAI
NormalizeIntensity(nonzero=True)); computing it over the box rather than the whole volume
makes a case's channels independent of how much body the scanner's field of view holds.
- zscore: (x - mean) / std; padded voxels get 0 (the mean).
- percentile: (x - p0.5) / (p99.5 - p0.5) clipped to [0, 1]; padded voxels get 0.
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

from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.manifest import MaskSpec, parse_mask_spec

NORMS = ("zscore", "percentile")
PREPROCESS_VERSION = 1


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
    spacing: tuple[float, float, float] = (0.5, 0.5, 1.0)  # x, y, z in mm
    crop: tuple[int, int, int] = (64, 224, 224)  # D, H, W voxels
    norm: str = "zscore"
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.mask, str):
            self.mask = parse_mask_spec(self.mask)
        self.modalities = list(self.modalities)
        self.spacing = tuple(float(s) for s in self.spacing)
        self.crop = tuple(int(c) for c in self.crop)
        if len(self.spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise UsageError(f"--spacing needs three positive numbers (x,y,z mm), got {self.spacing}")
        if len(self.crop) != 3 or any(c < 1 for c in self.crop):
            raise UsageError(f"--crop needs three positive integers (D,H,W), got {self.crop}")
        if self.norm not in NORMS:
            raise UsageError(f"--norm must be one of {', '.join(NORMS)}, got {self.norm!r}")
        if not self.modalities:
            raise UsageError("--modalities: give at least one modality column")

    def to_dict(self) -> dict:
        return {"version": PREPROCESS_VERSION, "modalities": list(self.modalities), "mask": str(self.mask),
                "spacing": list(self.spacing), "crop": list(self.crop), "norm": self.norm,
                "resample": "linear (images), nearest (masks), physical space, orientation of the first modality",
                "normalisation_region": "box voxels inside each sequence's field of view, non-zero"}

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        return cls(modalities=list(d["modalities"]), mask=parse_mask_spec(str(d["mask"])),
                   spacing=tuple(d.get("spacing", (0.5, 0.5, 1.0))),
                   crop=tuple(d.get("crop", (64, 224, 224))), norm=d.get("norm", "zscore"))

    def key(self) -> str:
        """Hash of everything that changes the preprocessed volume."""
        d = self.to_dict()
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


def parse_triple(text: str, what: str, cast=float) -> tuple:
    try:
        vals = tuple(cast(x) for x in str(text).replace("x", ",").split(",") if x.strip())
    except ValueError:
        raise UsageError(f"{what}: expected three comma-separated numbers, got {text!r}") from None
    if len(vals) != 3:
        raise UsageError(f"{what}: expected three comma-separated numbers, got {text!r}")
    return vals


def _sitk():
    import SimpleITK as sitk

    return sitk


def box_grid(first_image, mask, spacing, crop):
    """(origin, direction, size_xyz) of the box: `crop` voxels at `spacing`, centred on the
    centre of the mask's bounding box, oriented like `first_image`."""
    sitk = _sitk()
    arr = sitk.GetArrayViewFromImage(mask)
    nz = np.nonzero(arr)
    lo = [int(a.min()) for a in nz]  # z, y, x
    hi = [int(a.max()) for a in nz]
    centre_idx = [(lo[2] + hi[2]) / 2.0, (lo[1] + hi[1]) / 2.0, (lo[0] + hi[0]) / 2.0]  # x, y, z
    centre = np.array(mask.TransformContinuousIndexToPhysicalPoint(centre_idx))
    direction = np.array(first_image.GetDirection(), dtype=np.float64).reshape(3, 3)
    size_xyz = np.array([crop[2], crop[1], crop[0]], dtype=np.int64)
    spacing = np.array(spacing, dtype=np.float64)
    origin = centre - direction @ (spacing * (size_xyz - 1) / 2.0)
    return origin, direction, size_xyz, centre


def _resample(img, origin, direction, size_xyz, spacing, interp: str, default: float):
    sitk = _sitk()
    ip = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor}[interp]
    return sitk.Resample(img, [int(s) for s in size_xyz], sitk.Transform(), ip,
                         [float(o) for o in origin], [float(s) for s in spacing],
                         [float(d) for d in direction.ravel()], default, img.GetPixelID())


def normalise(arr: np.ndarray, valid: np.ndarray, norm: str, where: str) -> np.ndarray:
    """Per-channel normalisation over valid non-zero voxels; invalid voxels become 0."""
    sel = valid & (arr != 0)
    if not sel.any():
        sel = valid
    vals = arr[sel].astype(np.float64)
    out = np.zeros(arr.shape, dtype=np.float32)
    if norm == "zscore":
        mean, std = vals.mean(), vals.std()
        if not np.isfinite(std) or std < 1e-8:
            std = 1.0
        out[valid] = ((arr[valid] - mean) / std).astype(np.float32)
    else:
        lo, hi = np.percentile(vals, [0.5, 99.5])
        scale = hi - lo if hi - lo > 1e-8 else 1.0
        out[valid] = np.clip((arr[valid] - lo) / scale, 0.0, 1.0).astype(np.float32)
    if not np.isfinite(out).all():
        raise RadlensError(f"{where}: non-finite values after normalisation")
    return out


def _read_extra_mask(path: str, spec: MaskSpec | None, what: str, images=(), loaded=None,
                     strict_geometry: bool = False):
    """Segmentation target mask and its record; an empty one is allowed (a patient without
    a lesion)."""
    from radlens_cli.io.images import load_mask

    return load_mask(path, spec if spec is not None else MaskSpec(""), what, images=images, loaded=loaded,
                     allow_empty=True, strict_geometry=strict_geometry)


def _tell(case_id: str, info: dict) -> None:
    from radlens_cli import log

    if info.get("warning"):
        log.warn(f"case {case_id}: {info['warning']}")
    for note in info.get("notes", []):
        log.info(f"case {case_id}: {note}")


def preprocess_case(image_paths: list[str], mask_path: str, cfg: PreprocessConfig,
                    extra_mask_path: str | None = None, extra_mask_spec: MaskSpec | None = None,
                    case_id: str = "", strict_geometry: bool = False) -> dict:
    """volume float32 (C, D, H, W), mask uint8 (D, H, W), extra_mask uint8 (D, H, W) or None,
    and inputs: a JSON record of the DICOM objects read and any geometry warning ("" if none).

    A mask whose origin lies on none of the images' voxel lattices is a warning (an error
    with strict_geometry)."""
    from radlens_cli.io.images import load_mask, read_image

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
    origin, direction, size_xyz, centre = box_grid(images[0], mask, cfg.spacing, cfg.crop)
    channels = []
    for img, m, p in zip(images, cfg.modalities, image_paths):
        res = _resample(img, origin, direction, size_xyz, cfg.spacing, "linear", float("nan"))
        arr = sitk.GetArrayFromImage(res)
        valid = np.isfinite(arr)
        if not valid.any():
            raise CaseFailure(f"{tag}{m}: image {p} does not overlap the box around the mask {mask_path} "
                              f"(centre {np.round(centre, 1).tolist()} mm); wrong image or mask?", case_id, m, p,
                              f"does not overlap the box around the mask {mask_path} "
                              f"(centre {np.round(centre, 1).tolist()} mm); wrong image or mask?")
        try:
            channels.append(normalise(np.where(valid, arr, 0.0).astype(np.float32), valid, cfg.norm,
                                      f"{tag}{m} ({p})"))
        except RadlensError as e:
            raise failed(e, m, p, f"{m} ({p})") from None
    roi = sitk.GetArrayFromImage(_resample(mask, origin, direction, size_xyz, cfg.spacing, "nearest", 0))
    extra = None
    if extra_mask_path is not None:
        try:
            em, em_info = _read_extra_mask(extra_mask_path, extra_mask_spec, f"{tag}segmentation mask",
                                           case_images, loaded, strict_geometry)
        except RadlensError as e:
            raise failed(e, "segmentation mask", extra_mask_path) from None
        _tell(case_id, {k: v for k, v in em_info.items() if k in ("warning", "notes")})
        info.update({f"segmentation_{k}": v for k, v in em_info.items() if k in ("mask", "geometry", "warning")})
        extra = sitk.GetArrayFromImage(_resample(em, origin, direction, size_xyz, cfg.spacing, "nearest", 0))
        extra = extra.astype(np.uint8)
    return {"volume": np.stack(channels, 0).astype(np.float32), "mask": roi.astype(np.uint8),
            "extra_mask": extra, "inputs": json.dumps(info, sort_keys=True) if info else ""}


def _file_hash(path: str | None) -> str:
    from radlens_cli.provenance import sha256_file

    if path is None or not os.path.exists(path):
        return "missing"
    return sha256_file(path)


def _safe_name(case_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", str(case_id))[:80]
    return name or "case"


def save_npz_atomic(path: str, **arrays) -> None:
    from radlens_cli.io.files import atomic_output

    with atomic_output(path, force=True, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


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
        last = text.splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


class CaseDataset(Dataset):
    """Preprocessed cases of a manifest, with an optional on-disk float16 cache.

    Items: dict(index, case_id, volume float32 tensor (C, D, H, W), target, seg, inputs).
    target: float tensor (NaN when no targets were given); seg: uint8 (D, H, W) tensor of the
    segmentation mask (empty tensor when seg_mask is None); inputs: the JSON record of the
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
                 targets: np.ndarray | None = None, seg_mask: MaskSpec | None = None,
                 failures_as_records: bool = False, strict_geometry: bool = False):
        manifest.require_columns(cfg.modalities, "modality")
        manifest.require_columns([cfg.mask.column], "mask")
        if seg_mask is not None:
            manifest.require_columns([seg_mask.column], "segmentation mask")
        self.cfg = cfg
        self.case_ids = [str(c) for c in manifest.case_ids]
        self.images = list(zip(*[manifest.paths(m) for m in cfg.modalities]))
        self.masks = manifest.paths(cfg.mask.column)
        self.seg_mask = seg_mask
        self.seg_paths = manifest.paths(seg_mask.column) if seg_mask is not None else [None] * len(self.case_ids)
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

    def __len__(self) -> int:
        return len(self.case_ids)

    def cache_key(self, i: int) -> str:
        h = hashlib.sha256()
        h.update(self.cfg.key().encode())
        for p in list(self.images[i]) + [self.masks[i]]:
            h.update(_file_hash(p).encode())
        if self.seg_mask is not None:
            h.update(str(self.seg_mask).encode())
            h.update(_file_hash(self.seg_paths[i]).encode())
        if self.strict_geometry:  # a volume kept by a lenient run must not skip the strict check
            h.update(b"strict-geometry")
        return h.hexdigest()

    def cache_path(self, i: int) -> str | None:
        if not self.cache_dir:
            return None
        return os.path.join(self.cache_dir, f"{_safe_name(self.case_ids[i])}-{self.cache_key(i)[:24]}.npz")

    def load(self, i: int) -> dict:
        """Preprocessed arrays of case i (volume float16, mask, extra_mask) via the cache."""
        path = self.cache_path(i)
        if path is not None and os.path.exists(path):
            try:
                with np.load(path) as z:
                    out = {"volume": z["volume"], "mask": z["mask"],
                           "extra_mask": z["extra_mask"] if "extra_mask" in z.files else None,
                           "inputs": str(z["inputs"]) if "inputs" in z.files else ""}
                return out
            except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
                pass
        cid = self.case_ids[i]
        try:
            res = preprocess_case(list(self.images[i]), self.masks[i], self.cfg,
                                  self.seg_paths[i] if self.seg_mask is not None else None,
                                  self.seg_mask, case_id=cid, strict_geometry=self.strict_geometry)
        except RadlensError:
            raise
        except Exception as e:  # noqa: BLE001
            raise CaseFailure(f"case {cid}: preprocessing failed: {type(e).__name__}: {e}", cid, "preprocessing",
                              "", f"preprocessing failed: {type(e).__name__}: {e}") from None
        out = {"volume": res["volume"].astype(np.float16), "mask": res["mask"], "extra_mask": res["extra_mask"],
               "inputs": res["inputs"]}
        if path is not None:
            arrays = {"volume": out["volume"], "mask": out["mask"], "inputs": np.array(res["inputs"])}
            if out["extra_mask"] is not None:
                arrays["extra_mask"] = out["extra_mask"]
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
        if self.failures_as_records:
            try:
                arrs = self.load(i)
            except Exception as e:  # noqa: BLE001 - reported against the case; the batch goes on
                return {"index": i, "case_id": self.case_ids[i], "failure": self.failure_record(i, e)}
        else:
            arrs = self.load(i)
        target = float("nan") if self.targets is None else self.targets[i]
        seg = (torch.from_numpy(arrs["extra_mask"].astype(np.uint8)) if arrs["extra_mask"] is not None
               else torch.zeros(0, dtype=torch.uint8))
        return {"index": i, "case_id": self.case_ids[i],
                "volume": torch.from_numpy(arrs["volume"].astype(np.float32)),
                "target": torch.as_tensor(target), "seg": seg, "inputs": arrs.get("inputs", "")}


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
