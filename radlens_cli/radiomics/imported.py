"""PyRadiomics batch output (`pyradiomics cases.csv -o out.csv -f csv`) as a radlens case table.

A batch CSV has the input columns (Image, Mask, an id column, maybe Label), PyRadiomics'
`diagnostics_*` columns, then one column per feature named `<image type>_<family>_<feature>`
(no modality). One file per modality, or one file with a modality column.
"""

from __future__ import annotations

import json

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.files import input_path
from radlens_cli.names import column_name, parse_column, parse_column_names

FAMILIES = {"firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm", "shape", "shape2D"}
ID_COLUMNS = ("case_id", "ID", "Id", "id", "PatientID", "Patient", "patient_id", "Case", "case")


def is_feature(name: str) -> bool:
    _, image_type, family, _ = parse_column(name)
    return bool(image_type) and family in FAMILIES and "/" not in name


def _read(path: str):
    import pandas as pd

    real = input_path(path, "PyRadiomics CSV")
    try:
        return pd.read_csv(real, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - pandas raises many types for malformed text
        raise RadlensError(f"{path}: cannot parse as CSV: {e}") from None


def _id_column(df, path: str, id_column: str | None) -> str:
    if id_column:
        if id_column not in df.columns:
            raise RadlensError(f"{path}: no id column {id_column!r} (columns: {', '.join(df.columns[:6])}, ...)")
        return id_column
    for c in ID_COLUMNS:
        if c in df.columns:
            return c
    raise RadlensError(f"{path}: no case id column (looked for {', '.join(ID_COLUMNS[:5])}, ...); name it "
                       f"with the id-column option")


def read_batch(sources: list[tuple[str, str]], id_column: str | None = None,
               modality_column: str | None = None):
    """(case_ids, values, columns, diagnostics JSON per case) from PyRadiomics batch CSVs.

    sources: (modality, path) pairs; with modality_column a single ("", path) whose rows
    carry their modality in that column.
    """
    per_mod: dict[str, object] = {}  # modality -> frame indexed by case id
    for modality, path in sources:
        df = _read(path)
        if df.columns[0].startswith("Unnamed: ") or df.columns[0] == "":
            df = df.drop(columns=[df.columns[0]])
        idc = _id_column(df, path, id_column)
        if modality_column:
            if modality_column not in df.columns:
                raise RadlensError(f"{path}: no modality column {modality_column!r}")
            groups = [(str(m), g) for m, g in df.groupby(modality_column, sort=False)]
        else:
            groups = [(modality, df)]
        for mod, g in groups:
            if mod in per_mod:
                raise RadlensError(f"{path}: modality {mod} given twice")
            ids = g[idc].astype(str).str.strip()
            dup = ids[ids.duplicated()].unique().tolist()
            if dup:
                raise RadlensError(f"{path}: case {', '.join(dup[:5])} appears more than once"
                                   + (f" for modality {mod}" if modality_column else "")
                                   + " (one row per case and modality; several labels? import them apart)")
            per_mod[mod] = (path, g.set_index(ids), idc)
    if not per_mod:
        raise RadlensError("no PyRadiomics CSV given")
    mods = list(per_mod)
    id_sets = {m: set(per_mod[m][1].index) for m in mods}
    common = set.intersection(*id_sets.values())
    for m in mods:
        only = sorted(id_sets[m] - common)
        if only:
            more = f" (+{len(only) - 5} more)" if len(only) > 5 else ""
            raise RadlensError(f"{per_mod[m][0]}: case(s) {', '.join(only[:5])}{more} have no row for every "
                               f"modality ({', '.join(mods)})")
    case_ids = np.array(sorted(common), dtype=object)
    blocks, columns, diags = [], [], {c: {} for c in case_ids}
    for m in mods:
        path, g, idc = per_mod[m]
        g = g.loc[list(case_ids)]
        feats = [c for c in g.columns if is_feature(c)]
        if not feats:
            raise RadlensError(f"{path}: no PyRadiomics feature column (names like original_firstorder_Mean)")
        vals = g[feats].apply(lambda col: __import__("pandas").to_numeric(col, errors="coerce"))
        bad = vals.isna() & (g[feats] != "")
        if bad.to_numpy().any():
            i, j = np.argwhere(bad.to_numpy())[0]
            raise RadlensError(f"{path}: case {case_ids[i]}, column {feats[j]}: not a number "
                               f"({g[feats].iat[i, j]!r})")
        blocks.append(vals.to_numpy(dtype=np.float64))
        columns += [column_name(m, f) for f in feats]
        keep = [c for c in g.columns if c not in feats and c not in (idc, modality_column)]
        for cid, row in zip(case_ids, g[keep].to_dict("records")):
            diags[cid][m] = row
    values = np.hstack(blocks)
    diagnostics = np.array([json.dumps(diags[c], sort_keys=True) for c in case_ids], dtype=object)
    return case_ids, values, columns, diagnostics, parse_column_names(columns)
