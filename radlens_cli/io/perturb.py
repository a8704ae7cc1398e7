"""Perturbed and negative-control copies of a cohort (`radlens perturb`).

Image perturbations after Zwanenburg et al. (Sci Rep 2019, "Assessing robustness of
radiomic features by image perturbation"), each seeded and combinable:

- rotation: a rigid rotation by an angle drawn uniformly in [-rotation, rotation] degrees
  about the slice normal of the case's first image, through the ROI's centroid;
- translation: a shift drawn uniformly in [-translation, translation] voxels of the first
  image along each of its axes (sub-voxel for translation < 1);
- noise: Gaussian noise of standard deviation noise x the image's own noise level, the
  level estimated per image from the finest diagonal Haar wavelet coefficients of each
  slice (median |HH| / 0.6745; Chang et al. 2000, as Zwanenburg et al. do) and recorded;
- contour: the ROI dilated or eroded in-plane (each slice, 4-connected; slices are often
  several in-plane voxels thick) by 1..contour voxels, the sign drawn at random.

The rotation and translation make one physical transform that every image and mask of a
case is resampled through, each on its own grid (images by cubic B-spline, masks label
by label by linear interpolation of the label's indicator, a voxel taking the label
with the largest share when it is at least 0.5, as Zwanenburg et al. do). By default
(keep_histogram) a resampled image's values are then mapped back onto the original
image's values by rank (exact histogram matching: the k-th smallest resampled voxel takes
the k-th smallest original value), so the transform moves where values sit and not which
values there are; interpolation's smoothing of the noise, a resampling artefact, does not
narrow the histogram. Masks are not matched. A zero transform resamples nothing: the
voxels are copied.

READII-style negative controls (Kazmierski et al.), applied after the perturbations,
per image, inside the ROI (on the image's grid) or over the whole image:
shuffled-roi / shuffled-full permute the voxel values (histogram kept exactly, spatial
structure destroyed); randomized-roi / randomized-full replace them by values drawn
uniformly between their minimum and maximum.

Each (case, replicate) draws from its own random stream (seed, case_id, replicate), and
each perturbation's draw is made whether or not it is applied, so switching one
perturbation on or off leaves the others' values unchanged.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass

import numpy as np

from radlens_cli.errors import ParameterError, ParameterMessage, RadlensError
from radlens_cli.io import dicom_masks as dm
from radlens_cli.io.images import load_mask, read_image, resample_like, select_labels
from radlens_cli.io.manifest import Manifest, MaskSpec
from radlens_cli.names import parse_list
from radlens_cli.workers import imap_resilient, in_worker, test_kill_hook

PERTURBATIONS = ("rotation", "translation", "noise", "contour")
NEGATIVE_CONTROLS = ("shuffled-roi", "randomized-roi", "shuffled-full", "randomized-full")
# documented default strengths (docs/stability.md)
DEFAULT_ROTATION_DEG = 10.0      # uniform in [-10, 10] degrees about the slice normal
DEFAULT_TRANSLATION_VOXELS = 0.5  # uniform in [-0.5, 0.5] voxel per axis
DEFAULT_NOISE_FRACTION = 1.0      # added noise sd = 1 x the image's estimated noise sd
DEFAULT_CONTOUR_VOXELS = 1        # dilate or erode by one voxel in-plane
HAAR_MAD = 0.6745                 # median |N(0, 1)|


@dataclass(frozen=True)
class PerturbSettings:
    """Strengths of the perturbations (0 switches one off) and the negative control."""

    rotation: float = DEFAULT_ROTATION_DEG
    translation: float = DEFAULT_TRANSLATION_VOXELS
    noise: float = DEFAULT_NOISE_FRACTION
    contour: int = DEFAULT_CONTOUR_VOXELS
    negative_control: str | None = None
    keep_histogram: bool = True   # map a resampled image back onto its original's values by rank

    def check(self) -> "PerturbSettings":
        for name in ("rotation", "translation", "noise", "contour"):
            if not getattr(self, name) >= 0:
                raise ParameterError(f"{{{name}}} must be 0 or more (got {getattr(self, name)})", name)
        if self.rotation > 180:
            raise ParameterError(f"{{rotation}} {self.rotation}: at most 180 degrees", "rotation")
        if int(self.contour) != self.contour:
            raise ParameterError(f"{{contour}} {self.contour}: a whole number of voxels", "contour")
        if not isinstance(self.keep_histogram, (bool, np.bool_)):
            raise ParameterError(f"{{keep_histogram}} {self.keep_histogram!r}: True or False", "keep_histogram")
        if self.negative_control not in (None, *NEGATIVE_CONTROLS):
            raise ParameterError(f"{{negative_control}} {self.negative_control}: use one of "
                                 f"{', '.join(NEGATIVE_CONTROLS)}", "negative_control")
        return self


def _sitk():
    import SimpleITK as sitk

    return sitk


def stream_seed(*parts) -> int:
    """A 64-bit seed from the parts (seed, case_id, replicate, ...), independent of order of cases."""
    digest = hashlib.sha256(":".join(["radlens-perturb", *map(str, parts)]).encode()).digest()
    return int.from_bytes(digest[:8], "big")


@dataclass
class Draw:
    """What one replicate of one case was given (recorded per manifest row)."""

    rotation_deg: float
    translation_voxels: tuple
    contour: int

    @classmethod
    def make(cls, settings: PerturbSettings, seed: int, case_id: str, replicate: int) -> "Draw":
        rng = np.random.default_rng(stream_seed(seed, case_id, replicate))
        u_rot = rng.uniform(-1.0, 1.0)
        u_shift = rng.uniform(-1.0, 1.0, size=3)
        sign = 1 if rng.random() < 0.5 else -1
        u_mag = rng.random()
        c = int(settings.contour)
        contour = sign * (1 + int(u_mag * c)) if c else 0
        return cls(float(u_rot * settings.rotation), tuple(float(v) for v in u_shift * settings.translation),
                   contour)


# ---------------------------------------------------------------- single operations

def estimate_noise_sd(arr: np.ndarray) -> float:
    """Noise standard deviation of a volume (z, y, x): median |HH| / 0.6745 over the finest
    orthonormal Haar diagonal coefficients of every slice (Chang et al. 2000)."""
    a = np.asarray(arr, dtype=np.float64)
    ny, nx = (a.shape[1] // 2) * 2, (a.shape[2] // 2) * 2
    if ny < 2 or nx < 2:
        return 0.0
    a = a[:, :ny, :nx]
    hh = (a[:, 0::2, 0::2] - a[:, 0::2, 1::2] - a[:, 1::2, 0::2] + a[:, 1::2, 1::2]) / 2.0
    return float(np.median(np.abs(hh)) / HAAR_MAD)


def roi_centroid(mask) -> tuple:
    """Physical centre (mm) of a binary mask's voxels; the image centre when it is empty."""
    arr = _sitk().GetArrayViewFromImage(mask)
    idx = np.argwhere(arr > 0)
    centre = idx.mean(axis=0)[::-1] if len(idx) else (np.array(arr.shape[::-1]) - 1) / 2.0
    return mask.TransformContinuousIndexToPhysicalPoint([float(v) for v in centre])


def rigid_transform(reference, centre, rotation_deg: float, translation_voxels):
    """The resampling transform of a rotation about `reference`'s slice normal through
    `centre` and a shift in `reference`'s voxels along its axes; None when both are zero."""
    sitk = _sitk()
    shift = np.asarray(translation_voxels, dtype=np.float64)
    if rotation_deg == 0 and not shift.any():
        return None
    direction = np.array(reference.GetDirection()).reshape(3, 3)
    axis = direction[:, 2] / np.linalg.norm(direction[:, 2])
    t = sitk.VersorRigid3DTransform()
    t.SetCenter([float(v) for v in centre])
    t.SetRotation([float(v) for v in axis], float(np.deg2rad(rotation_deg)))
    offset = direction @ (shift * np.array(reference.GetSpacing()))
    t.SetTranslation([float(v) for v in offset])
    return t


def match_histogram(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """`values` with each voxel replaced by the reference value of the same rank: the k-th
    smallest of `values` takes the k-th smallest of `reference` (exact histogram matching;
    ties in `values` ranked by position, a stable sort, so the result is deterministic).
    The result has `reference`'s values exactly (its histogram, dtype) and `values`' order
    (shape). Memory linear in the voxels."""
    values, reference = np.asarray(values), np.asarray(reference)
    if values.size != reference.size:
        raise ParameterError(f"{{values}} has {values.size} voxels and {{reference}} {reference.size}: "
                             f"histogram matching needs the same number", "values", "reference")
    order = np.argsort(values, axis=None, kind="stable")
    out = np.empty(reference.size, dtype=reference.dtype)
    out[order] = np.sort(reference, axis=None, kind="stable")
    return out.reshape(values.shape)


def transform_image(img, transform, keep_histogram: bool = True):
    """`img` resampled through `transform` on its own grid (cubic B-spline); points beyond
    the field of view take the nearest edge voxel (a constant fill would add a spike to the
    histogram). keep_histogram: the resampled voxels then take `img`'s own values by rank
    (match_histogram), so the histogram is `img`'s exactly and the pixel type is kept."""
    sitk = _sitk()
    if transform is None:
        return img
    out = sitk.Resample(img, img, transform, sitk.sitkBSpline, 0.0, img.GetPixelID(), True)
    if not keep_histogram:
        return out
    matched = sitk.GetImageFromArray(match_histogram(sitk.GetArrayViewFromImage(out),
                                                     sitk.GetArrayViewFromImage(img)))
    matched.CopyInformation(img)
    return matched


def transform_labels(mask, transform):
    """A label map resampled through `transform` on its own grid: each label's indicator
    by linear interpolation, a voxel taking the label with the largest share if >= 0.5."""
    sitk = _sitk()
    if transform is None:
        return mask
    arr = sitk.GetArrayFromImage(mask)
    labels = [v for v in np.unique(arr) if v != 0]
    out = np.zeros_like(arr)
    best = np.full(arr.shape, 0.5, dtype=np.float64)
    for lab in labels:
        ind = sitk.GetImageFromArray((arr == lab).astype(np.float32))
        ind.CopyInformation(mask)
        frac = sitk.GetArrayFromImage(sitk.Resample(ind, ind, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32,
                                                    True))
        take = frac >= best  # >= : a share of exactly 0.5 keeps the label
        out[take] = lab
        best = np.where(take, np.maximum(frac, best + 1e-12), best)
    res = sitk.GetImageFromArray(out)
    res.CopyInformation(mask)
    return res


def randomise_contour(labels, spec: MaskSpec, steps: int):
    """The ROI `spec` of a label map grown (steps > 0) or shrunk (steps < 0) by |steps|
    voxels in-plane (4-connected, each slice). Growth takes the ROI's first label (the
    neighbouring label for a mask of every non-zero label); shrinking sets voxels to 0.
    A shrink that would empty the ROI leaves it as it is; returns (image, steps applied)."""
    from scipy import ndimage

    sitk = _sitk()
    if steps == 0:
        return labels, 0
    arr = sitk.GetArrayFromImage(labels)
    roi = arr != 0 if spec.labels is None else np.isin(arr, spec.labels)
    struct = np.zeros((3, 3, 3), dtype=bool)
    struct[1] = ndimage.generate_binary_structure(2, 1)
    out = arr.copy()
    if steps > 0:
        grown = ndimage.binary_dilation(roi, struct, iterations=steps)
        ring = grown & ~roi
        if spec.labels is None:
            fill = arr.copy()
            for _ in range(steps):
                fill = np.where(fill == 0, ndimage.grey_dilation(fill, footprint=struct), fill)
            out[ring] = fill[ring]
        else:
            out[ring] = spec.labels[0]
    else:
        kept = ndimage.binary_erosion(roi, struct, iterations=-steps, border_value=0)
        if not kept.any():
            return labels, 0
        out[roi & ~kept] = 0
    res = sitk.GetImageFromArray(out)
    res.CopyInformation(labels)
    return res, steps


def add_noise(img, sd: float, rng):
    """`img` plus Gaussian noise of standard deviation `sd` (float32)."""
    sitk = _sitk()
    if sd <= 0:
        return img
    arr = sitk.GetArrayFromImage(img).astype(np.float64)
    arr = arr + rng.normal(0.0, sd, size=arr.shape)
    out = sitk.GetImageFromArray(arr.astype(np.float32))
    out.CopyInformation(img)
    return out


def negative_control(img, roi, kind: str, rng):
    """READII negative control of one image; `roi` a binary mask on the image's grid
    (used by the -roi kinds)."""
    sitk = _sitk()
    arr = sitk.GetArrayFromImage(img)
    where = (sitk.GetArrayViewFromImage(roi) > 0) if kind.endswith("-roi") else np.ones(arr.shape, dtype=bool)
    vals = arr[where]
    if vals.size:
        if kind.startswith("shuffled"):
            arr[where] = rng.permutation(vals)
        else:
            arr[where] = rng.uniform(float(vals.min()), float(vals.max()), size=vals.size).astype(arr.dtype)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


# ---------------------------------------------------------------- one case, one replicate

def _read_labels(path: str, what: str, images):
    """A mask column as a label map: the file's labels, or a DICOM mask's binary selection."""
    sitk = _sitk()
    if dm.find_dicom_mask(path, what) is not None:
        return load_mask(path, MaskSpec(what), what, images=images, allow_empty=True)[0]
    raw = read_image(path, what, pixel_float=False)
    if raw.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkInt16, sitk.sitkInt32):
        raw = sitk.Cast(raw, sitk.sitkInt32)
    return raw


def perturb_case(images: dict, masks: dict, roi_column: str, spec: MaskSpec, settings: PerturbSettings,
                 seed: int, case_id: str, replicate: int):
    """One replicate of one case: ({name: image}, {name: mask}, record).

    images / masks: name -> SimpleITK image (images float32, masks label maps);
    replicate 0 is the original (nothing applied). The record holds the draw, whether the
    resampled images were histogram-matched (only when a transform was applied), each
    image's estimated noise sd and the sd added.
    """
    sitk = _sitk()
    names = list(images)
    record = {"replicate": replicate, "rotation_deg": 0.0, "translation_x_vox": 0.0, "translation_y_vox": 0.0,
              "translation_z_vox": 0.0, "histogram_matched": False, "contour_voxels": 0, "negative_control": ""}
    noise_sd = {n: estimate_noise_sd(sitk.GetArrayViewFromImage(images[n])) for n in names}
    for n in names:
        record[f"noise_sd_{n}"] = noise_sd[n]
        record[f"noise_added_sd_{n}"] = 0.0
    if replicate == 0:
        return dict(images), dict(masks), record
    draw = Draw.make(settings, seed, case_id, replicate)
    roi = select_labels(masks[roi_column], spec, f"the {roi_column} mask", roi_column)
    transform = rigid_transform(images[names[0]], roi_centroid(roi), draw.rotation_deg, draw.translation_voxels)
    keep = bool(settings.keep_histogram)
    out_images = {n: transform_image(img, transform, keep) for n, img in images.items()}
    out_masks = {n: transform_labels(m, transform) for n, m in masks.items()}
    record.update(rotation_deg=draw.rotation_deg, translation_x_vox=draw.translation_voxels[0],
                  translation_y_vox=draw.translation_voxels[1], translation_z_vox=draw.translation_voxels[2],
                  histogram_matched=keep and transform is not None)
    if settings.noise > 0:
        for n in names:
            sd = settings.noise * noise_sd[n]
            rng = np.random.default_rng(stream_seed(seed, case_id, replicate, "noise", n))
            out_images[n] = add_noise(out_images[n], sd, rng)
            record[f"noise_added_sd_{n}"] = sd
    out_masks[roi_column], record["contour_voxels"] = randomise_contour(out_masks[roi_column], spec, draw.contour)
    if settings.negative_control:
        kind = settings.negative_control
        roi = select_labels(out_masks[roi_column], spec, roi_column, roi_column, allow_empty=True)
        for n in names:
            img = out_images[n]
            on_grid = roi if _same_grid(roi, img) else resample_like(roi, img, "nearest")
            rng = np.random.default_rng(stream_seed(seed, case_id, replicate, "control", n))
            out_images[n] = negative_control(img, on_grid, kind, rng)
        record["negative_control"] = kind
    return out_images, out_masks, record


def _same_grid(a, b) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing())
            and np.allclose(a.GetOrigin(), b.GetOrigin()) and np.allclose(a.GetDirection(), b.GetDirection()))


# ---------------------------------------------------------------- the cohort

@dataclass(frozen=True)
class CaseJob:
    """One case's share of `perturb_cohort`: what a worker process needs (paths, not images)."""

    case_id: str
    split: object
    out_dir: str
    images: tuple          # ((modality, path), ...)
    masks: tuple           # ((mask column, path or None), ...): the ROI's column first
    roi: MaskSpec
    settings: PerturbSettings
    replicates: tuple      # the k to write (0: the original)
    seed: int
    carried: tuple         # ((column, value), ...) copied to every row


def perturb_one_case(job: CaseJob) -> list[dict]:
    """Read one case, write its replicates under job.out_dir, return their manifest rows."""
    sitk = _sitk()
    cid = job.case_id
    if in_worker():
        test_kill_hook(cid)  # the resilience tests' hook: a no-op unless RADLENS_TEST_KILL_WORKER names the case
    img_paths = list(job.images)
    images = {m: read_image(p, f"case {cid}, {m}") for m, p in img_paths}
    masks = {}
    for c, p in job.masks:
        if p is None and c != job.roi.column:
            continue  # an optional mask left empty stays empty
        masks[c] = _read_labels(p, f"case {cid}, {c}", img_paths)
    select_labels(masks[job.roi.column], job.roi, dict(job.masks)[job.roi.column], f"case {cid}, {job.roi.column}")
    rows = []
    for k in job.replicates:
        rid = f"{cid}_r{k}"
        out_images, out_masks, record = perturb_case(images, masks, job.roi.column, job.roi, job.settings, job.seed,
                                                     cid, k)
        os.makedirs(os.path.join(job.out_dir, rid), exist_ok=True)
        row = {"case_id": rid, "subject": cid, "split": job.split}
        for name, img in [*out_images.items(), *out_masks.items()]:
            rel = f"{rid}/{name}.nii.gz"
            sitk.WriteImage(img, os.path.join(job.out_dir, rel), True)
            row[name] = rel
        for c, _ in job.masks:
            row.setdefault(c, "")
        row.update(dict(job.carried))
        row.update(record)
        rows.append(row)
    return rows


def _init_worker():
    _sitk().ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # -j processes, one thread each


def _run_parallel(jobs_: list, jobs: int, warn=None):
    """Yield (index, rows) of each case as worker processes finish it (radlens_cli/workers.py:
    a worker that dies fails only its case, after one retry in a fresh worker). A case that
    fails stops the run with its message, as it does without workers."""
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")

    def on_death(i, how, retry):
        if retry and warn:
            warn(f"worker {how}, holding case {jobs_[i].case_id}; retrying it in a fresh worker")

    for i, status, value in imap_resilient(perturb_one_case, jobs_, jobs, ctx, _init_worker, retries=1,
                                           on_death=on_death):
        if status == "ok":
            yield i, value
        elif status == "lost":
            raise RadlensError(f"case {jobs_[i].case_id}: worker {value} (tried twice)")
        elif value.startswith(("RadlensError: ", "ParameterError: ")):  # already names the case, as without -j
            raise RadlensError(value.split(": ", 1)[1])
        else:
            raise RadlensError(f"case {jobs_[i].case_id}: {value}")


def perturb_cohort(manifest: Manifest, out_dir: str, modalities, roi: MaskSpec, other_masks=(),
                   settings: PerturbSettings | None = None, replicates: int = 5, include_original: bool = False,
                   seed: int = 0, progress=None, warn=None, jobs: int = 1):
    """Write the perturbed copy of `manifest`'s cohort under `out_dir` (which must exist):
    <out_dir>/<case_id>_r<k>/<column>.nii.gz for every image and mask column, on each
    file's own grid. Returns the new manifest (a DataFrame): case_id `<case_id>_r<k>`,
    subject (the original case_id), split, replicate, the image and mask columns
    (relative paths), the manifest's other columns unchanged, and the perturbation
    record; replicate 0 is the original, written when include_original. `jobs` > 1
    perturbs cases in that many worker processes; every draw is seeded per (seed, case,
    replicate), so the files and the manifest are the same whatever `jobs`.
    """
    import pandas as pd

    settings = (settings or PerturbSettings()).check()
    if replicates < 1:
        raise ParameterError(f"{{replicates}} must be at least 1 (got {replicates})", "replicates")
    modalities = list(modalities)
    mask_columns = list(dict.fromkeys([roi.column, *other_masks]))
    manifest.require_columns(modalities, "modality")
    manifest.require_columns(mask_columns, "mask")
    if set(modalities) & set(mask_columns):
        raise ParameterError(f"{{modalities}} and {{mask}}: column(s) {', '.join(set(modalities) & set(mask_columns))} "
                             f"named as both", "modalities", "mask")
    if "subject" in manifest.frame.columns:
        raise RadlensError(f"{manifest.path}: already has a `subject` column (a perturbed cohort?); "
                           f"perturb the original manifest")
    written = set(modalities) | set(mask_columns)
    other = [c for c in manifest.frame.columns if c not in written and c not in ("case_id", "split")]
    path_like = [c for c in other if _all_paths(manifest, c)]
    carried = [c for c in other if c not in path_like]
    ks = ([0] if include_original else []) + list(range(1, replicates + 1))
    jobs_ = []
    for i in range(len(manifest)):
        r = manifest.frame.iloc[i]
        jobs_.append(CaseJob(
            case_id=str(r["case_id"]), split=r["split"], out_dir=out_dir,
            images=tuple((m, manifest.resolve(r[m])) for m in modalities),
            masks=tuple((c, manifest.resolve(r[c])) for c in mask_columns),
            roi=roi, settings=settings, replicates=tuple(ks), seed=seed,
            carried=tuple((c, r[c]) for c in carried)))
    per_case = [None] * len(jobs_)
    if jobs <= 1:
        cases = range(len(jobs_))
        for i in (progress(cases) if progress else cases):
            per_case[i] = perturb_one_case(jobs_[i])
    else:
        results = _run_parallel(jobs_, jobs, warn)
        for _ in (progress(range(len(jobs_))) if progress else range(len(jobs_))):
            i, rows_i = next(results)
            per_case[i] = rows_i
    rows = [row for case_rows in per_case for row in case_rows]
    cols = ["case_id", "subject", "split", *modalities, *mask_columns, *carried, *rows[0].keys()]
    frame = pd.DataFrame(rows, columns=list(dict.fromkeys(cols)))
    if path_like and warn:  # said once the copy is written (an error before it says what matters)
        warn(ParameterMessage(f"column(s) {', '.join(path_like)} hold file paths and are in neither {{modalities}} "
                              f"nor {{mask}}/{{masks}}: left out of the perturbed manifest", "modalities", "mask",
                              "masks"))
    return frame


def _all_paths(manifest: Manifest, column: str) -> bool:
    vals = [v for v in manifest.frame[column] if str(v).strip()]
    return bool(vals) and all(os.path.exists(manifest.resolve(v) or "") for v in vals)


def choose_perturbations(perturbations: str | None = None, rotation: float | None = None,
                         translation: float | None = None, noise: float | None = None, contour: int | None = None,
                         negative_control: str | None = None,
                         keep_histogram: bool | None = None) -> tuple[list[str], PerturbSettings]:
    """(the perturbations chosen, their settings) from `perturb`'s options: a comma list or
    "none" (None: every perturbation, unless a negative control is asked for alone); a
    strength is given only for a chosen perturbation, the others' are 0. keep_histogram:
    rotated/translated images keep their original's values (PerturbSettings; None: True),
    given only when rotation or translation is chosen."""
    if negative_control is not None and negative_control not in NEGATIVE_CONTROLS:
        raise ParameterError(f"{{negative_control}} {negative_control}: use one of {', '.join(NEGATIVE_CONTROLS)}",
                             "negative_control")
    if perturbations is None:  # a negative control alone unless perturbations are asked for too
        chosen = [] if negative_control else list(PERTURBATIONS)
    elif perturbations.strip() == "none":
        chosen = []
    else:
        chosen = parse_list(perturbations, "perturbations")
        bad = [p for p in chosen if p not in PERTURBATIONS]
        if bad:
            raise ParameterError(f"{{perturbations}} {perturbations}: unknown {', '.join(bad)}; use "
                                 f"{', '.join(PERTURBATIONS)} or none", "perturbations")
    given = {"rotation": rotation, "translation": translation, "noise": noise, "contour": contour}
    stray = [k for k, v in given.items() if v is not None and k not in chosen]
    if stray:
        raise ParameterError(f"{{{stray[0]}}} is given but {stray[0]} is not among {{perturbations}} "
                             f"({', '.join(chosen) or 'none'})", stray[0], "perturbations")
    if keep_histogram is not None and not {"rotation", "translation"} & set(chosen):
        raise ParameterError("the histogram choice ({keep_histogram}) applies to a rotation or translation, and "
                             f"neither is among {{perturbations}} ({', '.join(chosen) or 'none'}): nothing is resampled",
                             "keep_histogram", "perturbations")
    keep_histogram = True if keep_histogram is None else keep_histogram
    defaults = PerturbSettings()
    strengths = {k: (0 if k not in chosen else (getattr(defaults, k) if v is None else v)) for k, v in given.items()}
    settings = PerturbSettings(**strengths, negative_control=negative_control, keep_histogram=keep_histogram)
    if not chosen and not negative_control:
        raise ParameterError("nothing to do: {perturbations} none and no {negative_control}", "perturbations",
                             "negative_control")
    return chosen, settings


def settings_record(settings: PerturbSettings) -> dict:
    return asdict(settings)
