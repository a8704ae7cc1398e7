"""Column metadata (modality, image_type, family, feature) for the lens.

One parser serves the project: `radlens_cli.radiomics.names`. Radiomics HDF5 tables carry
`column_*` datasets, used when present; CSV tables are parsed from their names
(`<modality>/<image_type>_<family>_<feature>`, e.g. `t2/wavelet-LLH_glcm_Correlation`).
"""

from __future__ import annotations

import numpy as np

from radlens_cli.radiomics.names import META_KEYS, parse_column_names, table_column_meta as column_meta

__all__ = ["META_KEYS", "parse_column_names", "column_meta", "collapse_image_type"]


def collapse_image_type(image_type) -> np.ndarray:
    """`wavelet-LLH` -> `wavelet`, `log-sigma-2-0-mm-3D` -> `log` (the paper's Table 1 rows)."""
    return np.array([str(t).split("-", 1)[0] if t else "" for t in image_type], dtype=object)
