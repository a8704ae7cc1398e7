"""Names the whole project shares (ground floor: imports nothing above errors).

Comma-separated name lists of options (`parse_list`), and the column vocabulary:
Radiomic column names: `<modality>/<imagetype>_<family>_<feature>` and their metadata.

PyRadiomics names a feature `<image type>_<feature class>_<feature>`, e.g.
`wavelet-LLH_glcm_Correlation` or `log-sigma-3-0-mm-3D_firstorder_Mean`: image types use
`-` but never `_`, feature classes and feature names have no `_`. radlens prefixes the
modality: `t2/wavelet-LLH_glcm_Correlation`.

Other commands call `table_column_meta` (a table's own `column_*` datasets, else
`parse_column_names`) on tables that lack the metadata datasets (CSV tables).
Names that do not follow the pattern are kept whole as the feature, with empty modality,
image type and family, so a generic table still works.
"""

from __future__ import annotations

import numpy as np

from radlens_cli.errors import ParameterError


def parse_list(text, param: str) -> list[str]:
    """Split a comma-separated list of names, refusing empty items and repeats.

    param: the parameter it came from, named in the error (`--<param>` on the command line)."""
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    if not items:
        raise ParameterError(f"{{{param}}}: give at least one name (comma-separated)", param)
    if len(set(items)) != len(items):
        raise ParameterError(f"{{{param}}}: a name is repeated in {text!r}", param)
    return items



META_KEYS = ("modality", "image_type", "family", "feature")
# PyRadiomics feature classes in the order tables and figures show them, and their printed names
FAMILY_ORDER = ("firstorder", "glcm", "gldm", "glrlm", "glszm", "ngtdm", "shape")
FAMILY_LABELS = {"firstorder": "First order", "glcm": "GLCM", "gldm": "GLDM", "glrlm": "GLRLM",
                 "glszm": "GLSZM", "ngtdm": "NGTDM", "shape": "Shape", "shape2D": "Shape 2D"}
_FAMILY_LABELS_LOWER = {k.lower(): v for k, v in FAMILY_LABELS.items()}


def family_label(family: str) -> str:
    """Printed name of a feature class (`glcm` -> `GLCM`, any case); unknown names unchanged."""
    f = str(family)
    return FAMILY_LABELS.get(f) or _FAMILY_LABELS_LOWER.get(f.lower(), f)


def parse_column(name: str) -> tuple[str, str, str, str]:
    """(modality, image_type, family, feature) of a column name.

    >>> parse_column("t2/wavelet-LLH_glcm_Correlation")
    ('t2', 'wavelet-LLH', 'glcm', 'Correlation')
    >>> parse_column("original_firstorder_Mean")
    ('', 'original', 'firstorder', 'Mean')
    >>> parse_column("age")
    ('', '', '', 'age')
    """
    name = str(name)
    modality, sep, rest = name.rpartition("/")
    if not sep:
        modality, rest = "", name
    parts = rest.split("_", 2)
    if len(parts) == 3 and all(parts):
        image_type, family, feature = parts
        return modality, image_type, family, feature
    return modality, "", "", rest


def parse_column_names(columns: list[str]) -> dict[str, np.ndarray]:
    """Per-column metadata arrays (object dtype) keyed modality, image_type, family, feature."""
    parsed = [parse_column(c) for c in columns]
    return {key: np.array([p[i] for p in parsed], dtype=object) for i, key in enumerate(META_KEYS)}


def table_column_meta(columns, table_meta: dict | None = None) -> dict[str, np.ndarray]:
    """Metadata for a table's columns: its own `column_*` datasets when complete, else parsed.

    The one entry point for commands that read radiomics tables (HDF5 tables carry the
    datasets; CSV tables do not).
    """
    table_meta = table_meta or {}
    if all(k in table_meta for k in META_KEYS):
        return {k: np.asarray(table_meta[k], dtype=object) for k in META_KEYS}
    parsed = parse_column_names(list(columns))
    return {k: (np.asarray(table_meta[k], dtype=object) if k in table_meta else parsed[k])
            for k in META_KEYS}


def column_name(modality: str, feature_key: str) -> str:
    """The radlens column for a PyRadiomics feature key of one modality."""
    return f"{modality}/{feature_key}"


def is_diagnostic(feature_key: str) -> bool:
    """PyRadiomics' provenance entries (`diagnostics_...`) are not feature values."""
    return feature_key.startswith("diagnostics_")
