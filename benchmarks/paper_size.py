"""Case ids, splits and radiomic column names of the paper-size synthetic cohorts that
benchmarks/lens.py and benchmarks/lens_default.py generate (one home for both; the
benchmarks import it from their own folder)."""

from __future__ import annotations

import numpy as np

MODALITIES = ["t2", "adc", "dwi"]
FAMILIES = ["firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm"]
IMAGE_TYPES = ["original"] + [f"wavelet-{a}{b}{c}" for a in "LH" for b in "LH" for c in "LH"]


def paper_cases(rng, n: int):
    """(case ids, split): n cases, split drawn 70/10/20 % train/val/test from `rng`."""
    ids = np.array([f"case{i:05d}" for i in range(n)], dtype=object)
    split = rng.choice(np.array(["train", "val", "test"], dtype=object), size=n, p=[0.7, 0.1, 0.2])
    return ids, split


def paper_columns(p: int) -> list[str]:
    """p radiomic column names like PyRadiomics', cycling modality, image type and family."""
    return [f"{MODALITIES[j % 3]}/{IMAGE_TYPES[(j // 3) % 9]}_{FAMILIES[(j // 27) % 6]}_F{j:04d}"
            for j in range(p)]
