"""Case tables (HDF5 and CSV); the generic radlens HDF5 container lives in io/formats.py.

HDF5 case table, schema "case-table/1":
  case_id  (n,)   UTF-8 strings, unique
  values   (n, p) float
  columns  (p,)   strings, unique
  split    (n,)   strings, optional
  column_<meta> (p,) strings, optional per-column metadata (modality, image_type, family, feature)
  root attributes: radlens_schema plus provenance (see provenance.py)
CSV form: header row, `case_id` first, optional `split`, the rest numeric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from radlens_cli import log
from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError, UsageError
from radlens_cli.io.cases import check_table
from radlens_cli.io.files import atomic_output, extension, input_path, read_sidecar
from radlens_cli.io.formats import CASE_TABLE, decode_strings, is_hdf5, open_h5, read_h5_attrs, write_h5


@dataclass
class CaseTable:
    """Rows are cases (joined by `case_id`, never by order), columns are features."""

    case_id: np.ndarray
    values: np.ndarray
    columns: list[str]
    split: np.ndarray | None = None
    column_meta: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    path: str = ""

    def __post_init__(self):
        self.case_id = np.asarray(self.case_id, dtype=object)
        self.values = np.asarray(self.values, dtype=np.float64)
        self.columns = [str(c) for c in self.columns]
        if self.split is not None:
            self.split = np.asarray(self.split, dtype=object)

    @property
    def n_cases(self) -> int:
        return len(self.case_id)

    def validate(self, what: str = "case table") -> "CaseTable":
        where = self.path or what
        n = len(self.case_id)
        if self.values.ndim != 2 or self.values.shape != (n, len(self.columns)):
            raise RadlensError(f"{where}: values has shape {self.values.shape}, expected "
                               f"({n}, {len(self.columns)}) from case_id and columns")
        require_unique(self.case_id, f"{where}: duplicate case_id")
        require_unique(np.array(self.columns, dtype=object), f"{where}: duplicate column")
        if self.split is not None and len(self.split) != n:
            raise RadlensError(f"{where}: split has {len(self.split)} entries for {n} cases")
        for key, arr in self.column_meta.items():
            if len(arr) != len(self.columns):
                raise RadlensError(f"{where}: column_{key} has {len(arr)} entries for "
                                   f"{len(self.columns)} columns")
        return self

    def require_finite(self, what: str | None = None) -> None:
        """Error naming the first case and column holding NaN or inf."""
        bad = ~np.isfinite(self.values)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            n_bad = int(bad.sum())
            raise RadlensError(f"{what or self.path}: non-finite value {self.values[i, j]} at case "
                               f"{self.case_id[i]!s}, column {self.columns[j]} ({n_bad} in all)")

    def take(self, rows=None, cols=None) -> "CaseTable":
        """A sub-table of the given row / column indices (or boolean masks)."""
        rows = slice(None) if rows is None else rows
        cols_idx = np.arange(len(self.columns)) if cols is None else np.arange(len(self.columns))[cols]
        return CaseTable(
            case_id=self.case_id[rows], values=self.values[rows][:, cols_idx],
            columns=[self.columns[j] for j in cols_idx],
            split=None if self.split is None else self.split[rows],
            column_meta={k: np.asarray(v, dtype=object)[cols_idx] for k, v in self.column_meta.items()},
            attrs=dict(self.attrs), path=self.path)

    def split_mask(self, name: str, what: str | None = None) -> np.ndarray:
        """Boolean mask of cases in split `name`; error when the table has no split."""
        if self.split is None:
            raise RadlensError(f"{what or self.path}: no `split` dataset; add a split column "
                               f"to the manifest or let radlens derive one")
        return self.split == name


def require_unique(arr: np.ndarray, msg: str) -> None:
    """Error `msg: a, b, c (+n more)` naming the values that occur more than once."""
    uniq, counts = np.unique(np.asarray(arr, dtype=str), return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        more = f" (+{len(dup) - 3} more)" if len(dup) > 3 else ""
        raise RadlensError(f"{msg}: {', '.join(map(str, dup[:3]))}{more}")


# ---------------------------------------------------------------- case tables

def table_format(path: str) -> str:
    """"hdf5", "csv" or "tsv" from an output name (`-` is HDF5); an unknown extension is an error."""
    if path == "-":
        return "hdf5"
    ext = extension(path)
    fmt = {".h5": "hdf5", ".hdf5": "hdf5", ".csv": "csv", ".csv.gz": "csv", ".tsv": "tsv", ".tsv.gz": "tsv"}.get(ext)
    if fmt is None:
        raise UsageError(f"{path}: unknown table format {ext or '(no extension)'}; "
                         f"use .h5/.hdf5, .csv, .tsv or .csv.gz")
    return fmt


def read_table(path: str, what: str = "case table", schema: str = CASE_TABLE, part: str = "warn",
               drop: tuple = ()) -> CaseTable:
    """Read a case table from HDF5 or CSV (`-` reads stdin, format sniffed).

    A CSV's provenance comes from its sidecar `<file>.json` when there is one. A table
    recording failed cases, or one part of a sharded run, is said so on stderr;
    part="refuse" makes a part an error, part="accept" (merge) says nothing. drop: text
    columns of a CSV to leave out (e.g. a `subject` column read by `text_column`).
    """
    real = input_path(path, what)
    shown = "stdin" if path == "-" else path
    if is_hdf5(real):
        table = _read_table_h5(real, shown, what, schema)
    else:
        table = _read_table_csv(real, shown, path, drop)
    table.path = shown
    table.validate(what)
    check_table(table.attrs, shown, part)
    return table


def _read_table_h5(real: str, shown: str, what: str, schema: str) -> CaseTable:
    with open_h5(real, schema, what) as f:
        for name in ("case_id", "values", "columns"):
            if name not in f:
                raise RadlensError(f"{shown}: missing dataset `{name}` (not a valid {what})")
        try:
            values = f["values"][()]
        except OSError as e:
            raise RadlensError(f"{shown}: cannot read `values` (truncated file?): {e}") from None
        meta = {k[len("column_"):]: decode_strings(f[k][()]) for k in f if k.startswith("column_")}
        return CaseTable(
            case_id=decode_strings(f["case_id"][()]), values=values,
            columns=list(decode_strings(f["columns"][()])),
            split=decode_strings(f["split"][()]) if "split" in f else None,
            column_meta=meta, attrs=read_h5_attrs(f))


def text_format(real: str, path: str = "") -> tuple[str, str | None]:
    """(separator, pandas compression) of a text table: gzip by its magic bytes, tab for a
    .tsv/.tsv.gz name (`real` or the name it was given as, `path`), else comma."""
    with open(real, "rb") as fh:
        head = fh.read(2)
    compression = "gzip" if head == b"\x1f\x8b" else None
    sep = "\t" if real.lower().endswith((".tsv", ".tsv.gz")) or path.lower().endswith((".tsv", ".tsv.gz")) else ","
    return sep, compression


def text_column(path: str, column: str, what: str = "case table"):
    """(case_id, values) of a text column of a CSV/TSV case table (`-` reads stdin), or None
    when the table is HDF5 or has no such column."""
    import pandas as pd

    real = input_path(path, what)
    if is_hdf5(real):
        return None
    sep, compression = text_format(real, path)
    try:
        head = pd.read_csv(real, sep=sep, compression=compression, nrows=0)
        if column not in head.columns or "case_id" not in head.columns:
            return None
        df = pd.read_csv(real, sep=sep, compression=compression, usecols=["case_id", column],
                         dtype=str, keep_default_na=False)
    except Exception as e:  # pandas raises many types for malformed text
        raise RadlensError(f"{'stdin' if path == '-' else path}: cannot parse as CSV or HDF5: {e}") from None
    return df["case_id"].to_numpy(dtype=object), df[column].str.strip().to_numpy(dtype=object)


def _read_table_csv(real: str, shown: str, path: str = "", drop: tuple = ()) -> CaseTable:
    import pandas as pd

    sep, compression = text_format(real, path)
    try:
        df = pd.read_csv(real, dtype={"case_id": str, "split": str}, sep=sep, compression=compression)
    except Exception as e:  # pandas raises many types for malformed text
        raise RadlensError(f"{shown}: cannot parse as CSV or HDF5: {e}") from None
    if len(df.columns) == 1 and sep == "," and "\t" in str(df.columns[0]):
        df = pd.read_csv(real, dtype={"case_id": str, "split": str}, sep="\t", compression=compression)
    df = df.drop(columns=[c for c in drop if c in df.columns])
    unnamed = [c for c in df.columns if str(c).startswith("Unnamed: ") or str(c).strip() == ""]
    if unnamed and unnamed[0] == df.columns[0]:
        col = df[df.columns[0]]
        if pd.api.types.is_integer_dtype(col) and (col.to_numpy() == np.arange(len(col))).all():
            log.warn(f"{shown}: dropped a leading unnamed column 0..{len(col) - 1} (a pandas index "
                     f"written by to_csv(); write with index=False)")
            df = df.drop(columns=[df.columns[0]])
            unnamed = unnamed[1:]
    if unnamed:
        raise RadlensError(f"{shown}: column {list(df.columns).index(unnamed[0]) + 1} has no name "
                           f"({unnamed[0]!r}); every column needs a header")
    if "case_id" not in df.columns and {"Image", "Mask"} <= set(map(str, df.columns)):
        raise RadlensError(f"{shown}: looks like PyRadiomics batch output (Image, Mask columns, no case_id); "
                           f"turn it into a case table with `radlens import-pyradiomics`")
    if "case_id" not in df.columns:
        raise RadlensError(f"{shown}: no `case_id` column (columns: {', '.join(map(str, df.columns[:5]))})")
    split = df.pop("split").astype(str).to_numpy(dtype=object) if "split" in df.columns else None
    case_id = df.pop("case_id").astype(str).to_numpy(dtype=object)
    for c in df.columns:
        if not pd.api.types.is_numeric_dtype(df[c]):
            bad = df[c][pd.to_numeric(df[c], errors="coerce").isna() & df[c].notna()]
            i = bad.index[0] if len(bad) else 0
            raise RadlensError(f"{shown}: column {c} is not numeric (case {case_id[i]}: {df[c].iloc[i]!r})")
    attrs = {}
    side = read_sidecar(path) if path and path != "-" else None
    if side:  # back to the root-attribute form of an HDF5 table (JSON strings)
        attrs = {k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else v
                 for k, v in side.items() if k not in ("file", "sha256")}
    return CaseTable(case_id=case_id, values=df.to_numpy(dtype=np.float64),
                     columns=list(map(str, df.columns)), split=split, attrs=attrs)


def write_table(table: CaseTable, path: str, force: bool = False, attrs: dict | None = None,
                schema: str = CASE_TABLE, extra: dict | None = None) -> None:
    """Write a case table in the format its name says: .h5/.hdf5 (also `-`), .csv, .tsv, .csv.gz.

    A text table's attributes (provenance, failures, part) go to its sidecar `<path>.json`.
    """
    table.validate()
    fmt = table_format(path)
    if fmt != "hdf5":
        import pandas as pd

        df = pd.DataFrame(table.values, columns=table.columns)
        if table.split is not None:
            df.insert(0, "split", table.split)
        df.insert(0, "case_id", table.case_id)
        ext = extension(path)
        side = dict(attrs if attrs is not None else table.attrs)
        side.setdefault("radlens_schema", schema)
        sep = "\t" if fmt == "tsv" else ","
        with atomic_output(path, force, suffix=ext, provenance=side) as tmp:
            if ext.endswith(".gz"):
                import gzip
                import io

                # no file name, mtime 0 in the gzip header: same table, same bytes
                with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
                        io.TextIOWrapper(gz, encoding="utf-8", newline="") as fh:
                    df.to_csv(fh, index=False, sep=sep)
            else:
                df.to_csv(tmp, index=False, sep=sep)
        return
    datasets = {"case_id": table.case_id, "values": table.values,
                "columns": np.array(table.columns, dtype=object)}
    if table.split is not None:
        datasets["split"] = table.split
    for key, arr in table.column_meta.items():
        datasets[f"column_{key}"] = arr
    datasets.update(extra or {})
    write_h5(path, schema, datasets, attrs if attrs is not None else table.attrs, force)


def align_cases(a: CaseTable, b: CaseTable, allow_missing: bool = False,
                names: tuple[str, str] = ("first", "second")) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (ia, ib) pairing equal case_ids, in the order of `a`.

    Without allow_missing any case present in only one table is an error naming the ids.
    """
    pos_b = {cid: i for i, cid in enumerate(b.case_id)}
    ia = [i for i, cid in enumerate(a.case_id) if cid in pos_b]
    only_a = [cid for cid in a.case_id if cid not in pos_b]
    pos_a = set(a.case_id)
    only_b = [cid for cid in b.case_id if cid not in pos_a]
    if not ia:
        raise RadlensError(f"{a.path or names[0]} and {b.path or names[1]} share no case_id "
                           f"(e.g. {a.case_id[0] if a.n_cases else '-'} vs "
                           f"{b.case_id[0] if b.n_cases else '-'})")
    if (only_a or only_b) and not allow_missing:
        parts = []
        for ids, t, nm in ((only_a, a, names[0]), (only_b, b, names[1])):
            if ids:
                more = f" (+{len(ids) - 5} more)" if len(ids) > 5 else ""
                parts.append(f"{len(ids)} case(s) only in {t.path or nm}: {', '.join(ids[:5])}{more}")
        raise ParameterError("; ".join(parts) + " (use {allow_missing} to take the intersection)", "allow_missing",
                             exit_code=EXIT_DATA, plain={"allow_missing": "allow_missing=True"})
    ia = np.array(ia, dtype=np.int64)
    ib = np.array([pos_b[cid] for cid in a.case_id[ia]], dtype=np.int64)
    return ia, ib
