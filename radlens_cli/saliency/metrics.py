"""Numbers about a map: its mass in the mask, its faithfulness, its agreement with another map."""

from __future__ import annotations

import numpy as np

DELETION_STEPS = np.linspace(0.0, 1.0, 11)  # fraction of the box's voxels removed


def mass_in_mask(m: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of the map's positive mass inside the mask (NaN for a map with none)."""
    pos = np.clip(np.asarray(m, dtype=np.float64), 0.0, None)
    total = pos.sum()
    return float(pos[np.asarray(mask) > 0].sum() / total) if total > 0 else float("nan")


def bounding_box(mask: np.ndarray) -> tuple:
    """Slices of the mask's bounding box (the whole array for an empty mask)."""
    nz = np.nonzero(np.asarray(mask) > 0)
    if not len(nz[0]):
        return tuple(slice(None) for _ in np.shape(mask))
    return tuple(slice(int(a.min()), int(a.max()) + 1) for a in nz)


def deletion_order(m: np.ndarray) -> np.ndarray:
    """Flat voxel indices, highest map value first (ties by index, so the order is fixed)."""
    flat = np.asarray(m, dtype=np.float64).ravel()
    return np.lexsort((np.arange(flat.size), -flat))


def deletion_inputs(x: np.ndarray, blurred: np.ndarray, m: np.ndarray, steps=DELETION_STEPS):
    """(len(steps), C, *sp) inputs: the top `step` fraction of voxels by `m` replaced by `blurred`."""
    order = deletion_order(m)
    n = order.size
    out = np.repeat(x[None], len(steps), axis=0)
    for i, f in enumerate(steps):
        k = int(round(f * n))
        if k:
            idx = np.unravel_index(order[:k], m.shape)
            out[i][(slice(None),) + idx] = blurred[(slice(None),) + idx]
    return out


def deletion_auc(scores, steps=DELETION_STEPS) -> float:
    """Area under the output against the fraction removed (trapezoid rule, fraction 0..1)."""
    s = np.asarray(scores, dtype=np.float64)
    st = np.asarray(steps, dtype=np.float64)
    return float(np.sum((s[1:] + s[:-1]) / 2.0 * np.diff(st)))


def blur(x: np.ndarray, sigma_vox: float = 3.0) -> np.ndarray:
    """Each channel of (C, *sp) blurred by a Gaussian of `sigma_vox` voxels (what deletion puts in)."""
    from scipy.ndimage import gaussian_filter

    return np.stack([gaussian_filter(np.asarray(c, dtype=np.float64), sigma_vox, mode="nearest") for c in x])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho of two maps' voxel values (NaN when one is constant)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.ravel(a)), rankdata(np.ravel(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def top_fraction(m: np.ndarray, fraction: float = 0.10) -> np.ndarray:
    """Boolean map of the top `fraction` of voxels (by deletion_order, so exactly that many)."""
    flat = np.zeros(np.size(m), dtype=bool)
    k = max(1, int(round(fraction * np.size(m))))
    flat[deletion_order(m)[:k]] = True
    return flat.reshape(np.shape(m))


def iou_top(a: np.ndarray, b: np.ndarray, fraction: float = 0.10) -> float:
    """Intersection over union of the two maps' top `fraction` voxels."""
    ta, tb = top_fraction(a, fraction), top_fraction(b, fraction)
    union = (ta | tb).sum()
    return float((ta & tb).sum() / union) if union else float("nan")


def agreement(maps: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, dict[str, float]]:
    """{method: {spearman_<other>, iou10_<other>}} over the voxels of the mask's bounding box."""
    box = bounding_box(mask)
    crops = {k: np.asarray(v)[box] for k, v in maps.items()}
    out = {k: {} for k in maps}
    for a in maps:
        for b in maps:
            if a != b:
                out[a][f"spearman_{b}"] = spearman(crops[a], crops[b])
                out[a][f"iou10_{b}"] = iou_top(crops[a], crops[b])
    return out
