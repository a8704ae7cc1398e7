"""PyRadiomics on one (case, modality), in physical space, with a result cache and a process pool.

One task = one case's image of one modality with the case's mask. The worker reads the
image and mask, puts them on one grid (see `Resampling`), runs PyRadiomics and returns the
feature values (floats, in PyRadiomics' order) and its diagnostics (strings). A task never
raises: it returns status ok / failed / skipped with a one-line reason naming the file.

Grids (DESIGN: real mpMRI comes on different grids, masks drawn on T2):
- default ("mask-to-image"): the mask is resampled (nearest neighbour) onto each
  sequence's own grid;
- `reference_modality`: every other sequence is resampled (B-spline) onto the reference
  modality's grid, the mask (nearest neighbour) too when it is not on it already.
A mask whose ROI lies more than `max_outside` (default 1 %) outside an image's field of
view in physical space is a geometry mismatch (100 %: no overlap at all). With
`resample_mask=False` any difference between the mask's and the image's grid (beyond
1e-3 relative) is a geometry mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from radlens_cli import __version__, log
from radlens_cli.errors import RadlensError
from radlens_cli.io.dicom_masks import find_dicom_mask
from radlens_cli.io.files import atomic_path, pid_temporary
from radlens_cli.io.images import (EmptyMaskError, geometry, load_mask, read_image, require_same_geometry,
                                   resample_like, same_geometry)
from radlens_cli.io.manifest import MaskSpec
from radlens_cli.names import is_diagnostic
from radlens_cli.provenance import sha256_file
from radlens_cli.radiomics.params import params_hash, pyradiomics_version, quiet_pyradiomics
from radlens_cli.workers import imap_resilient, in_worker, test_kill_hook

CACHE_SCHEMA = "radlens-radiomics-cache/1"


@dataclass(frozen=True)
class Task:
    case_id: str
    modality: str
    image: str | None
    mask: str | None
    reference: str | None = None  # reference modality's image when resampling onto it
    case_images: tuple = ()  # the case's (modality, path) images: grids a DICOM mask may reference
    other_grids: tuple = ()  # more (column, path) images of the case: their lattices are the mask's too


@dataclass(frozen=True)
class Options:
    params: dict
    mask_spec: MaskSpec
    reference_modality: str | None = None
    resample_mask: bool = True
    empty_mask: str = "fail"  # or "skip"
    cache_dir: str | None = None
    max_outside: float = 0.01
    strict_geometry: bool = False  # a mask on none of the case's image lattices fails the case

    def resampling(self) -> dict:
        """How grids were reconciled, for provenance and the cache key."""
        if self.reference_modality:
            return {"mode": "reference", "reference_modality": self.reference_modality,
                    "image_interpolator": "bspline", "mask_interpolator": "nearest",
                    "resample_mask": self.resample_mask, "max_outside": self.max_outside}
        return {"mode": "mask-to-image", "mask_interpolator": "nearest" if self.resample_mask else None,
                "resample_mask": self.resample_mask, "max_outside": self.max_outside}


@dataclass
class Result:
    case_id: str
    modality: str
    status: str  # ok, failed, skipped
    names: list[str] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)
    path: str = ""
    reason: str = ""
    cached: bool = False


class TaskFailure(Exception):
    def __init__(self, path: str | None, reason: str):
        super().__init__(reason)
        self.path = path or ""
        self.reason = reason


class EmptyMask(TaskFailure):
    pass


# ---------------------------------------------------------------- worker side

_EXTRACTORS: dict[str, object] = {}


def _exit_with(pid: int) -> None:
    """Pool workers hold their own queue's write end, so they never see the driver die of
    kill -9; they would wait forever (keeping the forkserver alive too). Watch it instead."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # pragma: no cover - pid reused by another user's process
            os._exit(1)


def init_worker(driver_pid: int | None = None):
    """One ITK and one BLAS thread per worker: the pool gives the parallelism, threads would
    only compete (and a fixed thread count keeps results identical for any --jobs).

    Returns the threadpoolctl limiter (None when threadpoolctl is absent) so an in-process
    run can restore the caller's settings."""
    import SimpleITK as sitk

    if driver_pid is not None:
        threading.Thread(target=_exit_with, args=(driver_pid,), daemon=True, name="driver-watch").start()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    quiet_pyradiomics()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return None
    return threadpool_limits(limits=1)


def _extractor(params: dict):
    key = json.dumps(params, sort_keys=True, default=str)
    if key not in _EXTRACTORS:
        from radiomics import featureextractor

        quiet_pyradiomics()
        with warnings.catch_warnings():  # pykwalify's load_module() of PyRadiomics' schema hooks
            warnings.simplefilter("ignore", DeprecationWarning)
            _EXTRACTORS[key] = featureextractor.RadiomicsFeatureExtractor(json.loads(key))
    return _EXTRACTORS[key]


def _clean(msg: str) -> str:
    first = str(msg).strip().splitlines()[0] if str(msg).strip() else "unreadable"
    return re.sub(r"^(image|mask|reference image): ", "", first)


def _read(path: str | None, what: str, float_pixels: bool = False):
    if not path:
        raise TaskFailure("", f"no {what} path (empty manifest cell)")
    if not os.path.exists(path):
        raise TaskFailure(path, f"{what} file not found")
    try:
        return read_image(path, what, pixel_float=float_pixels)
    except RadlensError as e:
        raise TaskFailure(path, _clean(str(e)).replace(f" {path}:", ":")) from None


def _outside_fraction(mask, image) -> float:
    """Fraction of the mask's ROI voxels whose centres lie outside `image`'s field of view."""
    import SimpleITK as sitk

    ones = sitk.Image(image.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(image)
    cover = sitk.Resample(ones, mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    roi = sitk.GetArrayViewFromImage(mask) > 0
    n = int(roi.sum())
    if n == 0:
        return 0.0
    outside = roi & (sitk.GetArrayViewFromImage(cover) == 0)
    return float(outside.sum()) / n


def _fov(img) -> str:
    g = geometry(img)
    return f"size {g['size']}, spacing {g['spacing']}, origin {g['origin']}"


def _check_coverage(mask, image, what: str, mask_path: str, max_outside: float) -> None:
    if same_geometry(mask, image):
        return  # the usual case: nothing can lie outside, skip the resampling
    frac = _outside_fraction(mask, image)
    if frac >= 1.0:
        raise TaskFailure(mask_path, f"geometry mismatch: the mask's ROI does not overlap the {what} "
                                     f"in physical space (mask {_fov(mask)}; {what} {_fov(image)})")
    if frac > max_outside:
        raise TaskFailure(mask_path, f"geometry mismatch: {100 * frac:.1f}% of the mask's ROI lies outside "
                                     f"the {what}'s field of view (mask {_fov(mask)}; {what} {_fov(image)})")


def _mask_on_grid(mask, grid, task: Task, opts: Options, what: str):
    import SimpleITK as sitk

    if same_geometry(mask, grid):
        mask = sitk.Image(mask)
        mask.CopyInformation(grid)  # equal within 1e-3: make it exact for PyRadiomics' own check
        return mask
    if not opts.resample_mask:
        try:
            require_same_geometry(grid, mask, task.image or "", task.mask or "")
        except RadlensError as e:
            raise TaskFailure(task.mask, f"{e} (resampling of the mask is disabled)") from None
    out = resample_like(mask, grid, "nearest")
    if not sitk.GetArrayViewFromImage(out).any():
        raise TaskFailure(task.mask, f"mask is empty on the {what} grid after nearest-neighbour resampling "
                                     f"({_fov(grid)}); the ROI is smaller than its voxels")
    return out


INPUTS_KEY = "diagnostics_radlens_Inputs"  # JSON: DICOM UIDs, segments, placement, geometry warning


def read_task_mask(task: Task, opts: Options, loaded: dict | None = None):
    """The task's binary mask (label map, DICOM-SEG or RTSTRUCT) and its record; raises
    TaskFailure / EmptyMask."""
    if not task.mask:
        raise TaskFailure("", "no mask path (empty manifest cell)")
    if not os.path.exists(task.mask):
        raise TaskFailure(task.mask, "mask file not found")
    images = task.case_images or ((task.modality, task.image),)
    try:
        return load_mask(task.mask, opts.mask_spec, "mask", images=images, loaded=loaded,
                         strict_geometry=opts.strict_geometry, other_grids=task.other_grids)
    except EmptyMaskError as e:
        raise EmptyMask(task.mask, e.reason) from None
    except RadlensError as e:
        reason = _clean(str(e)).replace(f" {task.mask}:", ":").replace(f" {task.mask} ", " ")
        raise TaskFailure(task.mask, reason) from None


def prepare(task: Task, opts: Options):
    """(image, mask, record) with image and mask on one grid for PyRadiomics; raises
    TaskFailure / EmptyMask. The record says what DICOM objects were read (see load_mask)."""
    import SimpleITK as sitk

    image = _read(task.image, "image")
    mask, info = read_task_mask(task, opts, {task.image: image})

    what = f"{task.modality} image"
    _check_coverage(mask, image, what, task.mask or "", opts.max_outside)
    if task.reference:
        reference = _read(task.reference, "reference image")
        _check_coverage(mask, reference, f"{opts.reference_modality} reference image", task.mask or "",
                        opts.max_outside)
        mask = _mask_on_grid(mask, reference, task, opts, f"{opts.reference_modality} (reference)")
        # B-spline in double precision: a reference grid finer than the image must not round
        image = resample_like(sitk.Cast(image, sitk.sitkFloat64), reference, "bspline")
        return image, mask, info
    mask = _mask_on_grid(mask, image, task, opts, task.modality)
    return image, mask, info


def light_diagnostics(image, mask) -> dict[str, str]:
    """The ROI diagnostics radlens keeps, in PyRadiomics' names and formats, computed in one
    pass: PyRadiomics' own (`additionalInfo`) hash the whole image and label its connected
    components, about half the time of a task on a CT volume, and radlens records the
    inputs' sha256 and the settings in its provenance anyway."""
    import SimpleITK as sitk

    arr = sitk.GetArrayViewFromImage(mask)
    nz = np.nonzero(arr)
    lo = [int(a.min()) for a in nz[::-1]]  # x, y, z like ITK
    hi = [int(a.max()) for a in nz[::-1]]
    bbox = tuple(lo + [h - l + 1 for l, h in zip(lo, hi)])
    return {"diagnostics_Image-original_Spacing": str(tuple(image.GetSpacing())),
            "diagnostics_Image-original_Size": str(tuple(image.GetSize())),
            "diagnostics_Mask-original_BoundingBox": str(bbox),
            "diagnostics_Mask-original_VoxelNum": str(int(len(nz[0])))}


def extract_features(image, mask, params: dict) -> tuple[list[str], list[float], dict[str, str]]:
    """PyRadiomics on a prepared (image, binary mask) pair: names, values, diagnostics.

    Unless the params set `additionalInfo` themselves, PyRadiomics' diagnostics are
    replaced by `light_diagnostics` (feature values do not depend on them).
    """
    setting = params.get("setting") or {}
    light = "additionalInfo" not in setting
    if light:
        params = {**params, "setting": {**setting, "additionalInfo": False}}
    result = _extractor(params).execute(image, mask, label=1)
    names, values = [], []
    diagnostics = light_diagnostics(image, mask) if light else {}
    for key, val in result.items():
        if is_diagnostic(key):
            if not key.startswith(("diagnostics_Versions_", "diagnostics_Configuration_")):
                diagnostics[key] = str(val)
            continue
        names.append(key)
        values.append(float(val))
    return names, values, diagnostics


def cache_key(task: Task, opts: Options) -> str:
    hashes = {}
    for role, path in (("image", task.image), ("mask", task.mask), ("reference", task.reference)):
        if path:
            if not os.path.exists(path):
                raise TaskFailure(path, f"{role} file not found")
            hashes[role] = sha256_file(path)
        elif role != "reference":
            raise TaskFailure("", f"no {role} path (empty manifest cell)")

    try:
        dicom_mask = find_dicom_mask(task.mask) is not None
    except RadlensError as e:
        raise TaskFailure(task.mask, _clean(str(e))) from None
    if dicom_mask:  # placed on another image's grid: that image is an input too
        hashes["case_images"] = [[m, sha256_file(p)] for m, p in task.case_images if p and os.path.exists(p)]
    record = {"schema": CACHE_SCHEMA, "case_id": task.case_id, "modality": task.modality, "inputs": hashes,
              "params": params_hash(opts.params), "mask": str(opts.mask_spec),
              "resampling": opts.resampling(), "radlens": __version__, "pyradiomics": pyradiomics_version()}
    if opts.strict_geometry:
        record["strict_geometry"] = True
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:60]


def cache_path(cache_dir: str, task: Task, key: str) -> str:
    return os.path.join(cache_dir, f"{_safe(task.case_id)}.{_safe(task.modality)}.{key[:32]}.json")


def cache_read(path: str, key: str) -> Result | None:
    try:
        with open(path, encoding="utf-8") as fh:
            rec = json.load(fh)
    except (OSError, ValueError):
        return None  # absent or unreadable: recompute (an atomic write never leaves half a file)
    if rec.get("key") != key or rec.get("status") != "ok":
        return None
    return Result(rec["case_id"], rec["modality"], "ok", list(rec["names"]), [float(v) for v in rec["values"]],
                  dict(rec.get("diagnostics", {})), cached=True)


def cache_write(path: str, key: str, res: Result) -> None:
    """Written to a temporary name and renamed: a killed run leaves no half file."""
    rec = {"key": key, "status": "ok", "case_id": res.case_id, "modality": res.modality,
           "names": res.names, "values": res.values, "diagnostics": res.diagnostics}
    with atomic_path(path, tmp=pid_temporary(path), fsync=True) as tmp, \
            open(tmp, "w", encoding="utf-8") as fh:
        json.dump(rec, fh)


def run_task(task: Task, opts: Options) -> Result:
    """Extract one (case, modality); never raises for bad data (returns a failed Result)."""
    try:
        key = path = None
        if opts.cache_dir:
            key = cache_key(task, opts)
            path = cache_path(opts.cache_dir, task, key)
            hit = cache_read(path, key)
            if hit is not None:
                return hit
        image, mask, info = prepare(task, opts)
        if in_worker():
            test_kill_hook(task.case_id, f"{task.case_id}:{task.modality}")
        try:
            names, values, diagnostics = extract_features(image, mask, opts.params)
            if info:
                diagnostics[INPUTS_KEY] = json.dumps(info, sort_keys=True)
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - one bad case must not stop the batch
            text = str(e).strip().splitlines()[0] if str(e).strip() else ""
            if not isinstance(e, ValueError):  # PyRadiomics' own refusals are ValueErrors
                text = f"{type(e).__name__}: {text}" if text else type(e).__name__
            culprit = task.mask if "mask" in text.lower() else task.image
            raise TaskFailure(culprit, f"PyRadiomics failed: {text}") from None
        res = Result(task.case_id, task.modality, "ok", names, values, diagnostics)
        if path is not None:
            cache_write(path, key, res)
        return res
    except EmptyMask as e:
        status = "skipped" if opts.empty_mask == "skip" else "failed"
        return Result(task.case_id, task.modality, status, path=e.path, reason=e.reason)
    except TaskFailure as e:
        return Result(task.case_id, task.modality, "failed", path=e.path, reason=e.reason)
    except MemoryError:
        return Result(task.case_id, task.modality, "failed", path=task.image or "", reason="out of memory")
    except OSError as e:  # e.g. the cache folder became unwritable
        return Result(task.case_id, task.modality, "failed", path=getattr(e, "filename", None) or "",
                      reason=f"{type(e).__name__}: {e.strerror or e}")
    except Exception as e:  # noqa: BLE001 - report it against the task, let the batch go on
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return Result(task.case_id, task.modality, "failed", path=task.image or "",
                      reason=f"unexpected {type(e).__name__}: {text}")


# ---------------------------------------------------------------- driver side

def _cost(task: Task) -> int:
    """Cheap size proxy for longest-first scheduling (bigger images and masks take longer)."""
    total = 0
    for p in (task.image, task.mask):
        try:
            if p and os.path.isdir(p):
                total += sum(e.stat().st_size for e in os.scandir(p) if e.is_file())
            elif p:
                total += os.path.getsize(p)
        except OSError:
            pass
    return total


def run_tasks(tasks: list[Task], opts: Options, jobs: int = 1):
    """Yield a Result per task as they finish (order of completion).

    jobs > 1: a process pool (forkserver: workers fork from a clean server that has
    PyRadiomics imported, so they start fast and never inherit ITK threads), tasks
    dispatched largest first so the pool's tail stays short.
    """
    if jobs <= 1 or len(tasks) <= 1:
        import SimpleITK as sitk

        old = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
        limiter = init_worker()
        try:
            for t in tasks:
                yield run_task(t, opts)
        finally:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(old)
            if limiter is not None:
                limiter.restore_original_limits()
        return

    import functools
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["radlens_cli.radiomics.extract", "radiomics.featureextractor", "SimpleITK"])
    order = sorted(range(len(tasks)), key=lambda i: (-_cost(tasks[i]), i))
    ordered = [tasks[i] for i in order]

    def on_death(i, how, retry):
        t = ordered[i]
        if retry:
            log.warn(f"worker {how}, holding case {t.case_id}, modality {t.modality}; "
                     f"retrying it in a fresh worker")

    # A dead worker (OOM kill, segfault) fails only the task it held, after one retry; it is
    # replaced and the run goes on. A lost task is never cached, so a rerun tries it again.
    for i, status, value in imap_resilient(functools.partial(run_task, opts=opts), ordered, jobs, ctx,
                                           init_worker, (os.getpid(),), retries=1, on_death=on_death):
        t = ordered[i]
        if status == "ok":
            yield value
        elif status == "lost":
            yield Result(t.case_id, t.modality, "failed", path=t.image or "",
                         reason=f"worker {value} (tried twice)")
        else:
            yield Result(t.case_id, t.modality, "failed", path=t.image or "", reason=f"unexpected {value}")


def summarise_failure(res: Result) -> str:
    where = f"{res.path}: " if res.path else ""
    return f"case {res.case_id}, modality {res.modality}: {where}{res.reason}"
