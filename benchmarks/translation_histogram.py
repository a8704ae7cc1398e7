"""Benchmark: what a sub-voxel translation does to the phantom's histogram (docs/stability.md,
"Translation and the histogram").

Per case and modality of a `synth --size 48,48,10` cohort, for a (0.5, -0.5, 0.25)-voxel
shift: the L1 distance between normalised histograms (16 and 64 bins over the joint range)
after `perturb`'s default (cubic B-spline, then the original values by rank:
keep_histogram), after the B-spline's resampled values alone (`--resampled-histogram`,
0.4.0's default) and after a Fourier phase shift (symmetric padding; keeps the noise
spectrum); the ratio of the finest-scale noise estimate and of the image sd after / before
(default and B-spline); and the L1 expected between two independent samples of the image's
histogram, sqrt(4 / (pi N)) sum_k sqrt(p_k).

    python benchmarks/translation_histogram.py [--cases 10]
    python benchmarks/translation_histogram.py --cases 1   # smoke run, ~1 s
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SHIFT = (0.5, -0.5, 0.25)   # x, y, z voxels
BINS = 16
FINE_BINS = 64


def _hist(a, edges):
    return np.histogram(a, edges)[0] / a.size


def hist_l1(a, b, bins=BINS) -> float:
    edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), bins + 1)
    return float(np.abs(_hist(a, edges) - _hist(b, edges)).sum())


def sampling_l1(a, bins=BINS) -> float:
    p = _hist(a, np.linspace(a.min(), a.max(), bins + 1))
    return float(np.sqrt(4 / (np.pi * a.size)) * np.sqrt(p).sum())


def fourier_shift(a, shift_zyx):
    from scipy import ndimage

    pad = [(n // 2, n // 2) for n in a.shape]
    big = np.pad(a, pad, mode="symmetric")
    out = np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(big), shift_zyx)).real
    return out[tuple(slice(p[0], p[0] + n) for p, n in zip(pad, a.shape))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10)
    a = ap.parse_args()
    import SimpleITK as sitk

    from radlens_cli.io import perturb as pt
    from radlens_cli.io.images import read_image
    from radlens_cli.synth import phantom

    rows = {m: [] for m in phantom.MODALITIES}
    with tempfile.TemporaryDirectory() as d:
        phantom.write_cohort(d, a.cases, 0, (48, 48, 10))
        for cid in phantom.case_ids(a.cases):
            for m in rows:
                img = read_image(os.path.join(d, cid, f"{m}.nii.gz"))
                x = sitk.GetArrayFromImage(img).astype(np.float64)
                t = pt.rigid_transform(img, (0, 0, 0), 0.0, SHIFT)
                k = sitk.GetArrayFromImage(pt.transform_image(img, t)).astype(np.float64)
                b = sitk.GetArrayFromImage(pt.transform_image(img, t, keep_histogram=False)).astype(np.float64)
                # sitk's transform maps output points to input points: the content moves by -SHIFT
                f = fourier_shift(x, tuple(-s for s in SHIFT[::-1]))
                fine = pt.estimate_noise_sd(x)
                rows[m].append((hist_l1(x, k), hist_l1(x, b), hist_l1(x, f),
                                hist_l1(x, k, FINE_BINS), hist_l1(x, b, FINE_BINS), hist_l1(x, f, FINE_BINS),
                                pt.estimate_noise_sd(k) / fine, pt.estimate_noise_sd(b) / fine,
                                k.std() / x.std(), b.std() / x.std(), sampling_l1(x)))
    print(f"{a.cases} cases, shift {SHIFT} voxels: mean (min-max) over cases")
    names = (f"L1 {BINS} bins, default (B-spline + original values by rank)", f"L1 {BINS} bins, B-spline",
             f"L1 {BINS} bins, Fourier shift", f"L1 {FINE_BINS} bins, default", f"L1 {FINE_BINS} bins, B-spline",
             f"L1 {FINE_BINS} bins, Fourier shift", "fine noise after/before, default",
             "fine noise after/before, B-spline", "sd after/before, default", "sd after/before, B-spline",
             f"L1 {BINS} bins, two independent samples")
    table = {m: np.array(v) for m, v in rows.items()}
    print(f"{'':60s}" + "".join(f"{m:>22s}" for m in table))
    for k, n in enumerate(names):
        print(f"{n:60s}" + "".join(f"{v[:, k].mean():.4f} ({v[:, k].min():.3f}-{v[:, k].max():.3f})".rjust(22)
                                   for v in table.values()))


if __name__ == "__main__":
    main()
