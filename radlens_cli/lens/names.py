"""Column metadata (modality, image_type, family, feature) for radiomic column names.

Radiomics HDF5 tables carry `column_modality`, `column_image_type`, `column_family` and
`column_feature` datasets; those are used when present. For CSV tables (or tables written
without metadata) the names are parsed here, `<modality>/<image_type>_<family>_<feature>`
as written by `extract-radiomics` (e.g. `t2/wavelet-LLH_glcm_Correlation`). This is a
small local fallback; when `radlens_cli.radiomics.names.column_meta` exists it is used
instead so there is one parser in the project.
"""

from __future__ import annotations

import numpy as np

META_KEYS = ("modality", "image_type", "family", "feature")


def parse_column_names(columns) -> dict[str, np.ndarray]:
    """Split `<modality>/<image_type>_<family>_<feature>` names into metadata arrays.

    Parts that cannot be parsed are empty strings (a name without `/` has no modality;
    a name without two `_` is all feature).
    """
    out = {k: [] for k in META_KEYS}
    for name in columns:
        name = str(name)
        modality, _, rest = name.rpartition("/")
        parts = rest.split("_", 2)
        if len(parts) == 3:
            image_type, family, feature = parts
        else:
            image_type, family, feature = "", "", rest
        for k, v in zip(META_KEYS, (modality, image_type, family, feature)):
            out[k].append(v)
    return {k: np.array(v, dtype=object) for k, v in out.items()}


def column_meta(columns, table_meta: dict | None = None) -> dict[str, np.ndarray]:
    """Metadata arrays for `columns`: the table's own datasets where present, else parsed."""
    table_meta = table_meta or {}
    parsed = None
    if not all(k in table_meta for k in META_KEYS):
        try:  # the radiomics helper's parser, when it is on this branch
            from radlens_cli.radiomics.names import column_meta as _shared
        except ImportError:
            _shared = None
        parsed = None
        if _shared is not None:
            try:
                got = _shared(list(columns))
                parsed = {k: np.asarray(got[k], dtype=object) for k in META_KEYS}
            except Exception:  # noqa: BLE001 - fall back to the local parser on any mismatch
                parsed = None
        if parsed is None:
            parsed = parse_column_names(columns)
    return {k: (np.asarray(table_meta[k], dtype=object) if k in table_meta else parsed[k])
            for k in META_KEYS}


def collapse_image_type(image_type) -> np.ndarray:
    """`wavelet-LLH` -> `wavelet`, `log-sigma-2-0-mm-3D` -> `log` (the paper's Table 1 rows)."""
    return np.array([str(t).split("-", 1)[0] if t else "" for t in image_type], dtype=object)
