"""How the lens groups radiomic columns (the column vocabulary itself is radlens_cli.names)."""

from __future__ import annotations

import numpy as np


def collapse_image_type(image_type) -> np.ndarray:
    """`wavelet-LLH` -> `wavelet`, `log-sigma-2-0-mm-3D` -> `log` (the paper's Table 1 rows)."""
    return np.array([str(t).split("-", 1)[0] if t else "" for t in image_type], dtype=object)
