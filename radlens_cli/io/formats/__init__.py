"""File formats radlens writes and reads: schema names, the generic HDF5 container, strings.

Every radlens HDF5 file carries a root attribute `radlens_schema` naming its kind and version:

  case-table/1     case tables (io/tables.py): case_id, values, columns, optional split and column_<meta>
  share-model/1    fit-share's SHARE.h5 (lens/share.py)
  decoder/1        decode's DEC.h5 (lens/steps.py)
  correlation/1    correlate's CORR.h5 (io/formats/correlation.py)

plus provenance attributes (see provenance.py). Strings are stored UTF-8; `decode_strings` reads
them back whatever h5py returns (bytes or str).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np

from radlens_cli.errors import RadlensError
from radlens_cli.io.files import atomic_output, input_path

CASE_TABLE = "case-table/1"
SHARE_SCHEMA = "share-model/1"
DECODER_SCHEMA = "decoder/1"
CORRELATION_SCHEMA = "correlation/1"

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _str_dtype():
    import h5py

    return h5py.string_dtype("utf-8")


def decode_strings(arr) -> np.ndarray:
    """Strings read from HDF5 (bytes or str, any shape) as a flat object array of str."""
    out = [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in np.asarray(arr).ravel()]
    return np.array(out, dtype=object)


def is_hdf5(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == HDF5_MAGIC


# ---------------------------------------------------------------- generic HDF5 container

def read_h5_attrs(f) -> dict:
    out = {}
    for k, v in f.attrs.items():
        out[k] = v.decode() if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)
    return out


def open_hdf5_file(path: str, expected: str = "", what: str = "input"):
    """An open h5py.File (read-only) for `path` (`-` = stdin); one-line errors otherwise."""
    import h5py

    real = input_path(path, what)
    shown = "stdin" if path == "-" else path
    if not is_hdf5(real):
        raise RadlensError(f"{shown}: not an HDF5 file {expected}".rstrip())
    try:
        return h5py.File(real, "r")
    except OSError as e:
        raise RadlensError(f"{shown}: cannot read HDF5 file (truncated or corrupt?): {e}") from None


@contextlib.contextmanager
def open_h5(path: str, schema: str | tuple[str, ...], what: str = "input"):
    """Open a radlens HDF5 file, checking its `radlens_schema` kind (e.g. "share-model/1").

    `schema` may be a tuple of accepted kinds; the version after `/` must match.
    """
    shown = "stdin" if path == "-" else path
    f = open_hdf5_file(path, f"(expected a radlens {what})", what)
    try:
        kinds = (schema,) if isinstance(schema, str) else tuple(schema)
        got = f.attrs.get("radlens_schema")
        got = got.decode() if isinstance(got, bytes) else got
        if got not in kinds:
            if got is None:
                raise RadlensError(f"{shown}: not a radlens file (no radlens_schema attribute); "
                                   f"expected {' or '.join(kinds)}")
            raise RadlensError(f"{shown}: is a radlens {got}, expected {' or '.join(kinds)}")
        yield f
    finally:
        f.close()


def write_h5(path: str, schema: str, datasets: dict, attrs: dict | None = None,
             force: bool = False, groups: dict | None = None) -> None:
    """Write a radlens HDF5 file atomically. Strings become UTF-8 datasets.

    datasets: name -> array-like; groups: group name -> {dataset name -> array}.
    Timestamps are not tracked, so equal content gives equal bytes.
    """
    import h5py

    with atomic_output(path, force, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["radlens_schema"] = schema
            for k, v in (attrs or {}).items():
                f.attrs[k] = v if not isinstance(v, (dict, list)) else json.dumps(v, default=str)
            _write_datasets(f, datasets)
            for gname, content in (groups or {}).items():
                _write_datasets(f.create_group(gname, track_order=True), content)


def _write_datasets(parent, datasets: dict) -> None:
    for name, arr in datasets.items():
        if arr is None:
            continue
        a = np.asarray(arr)
        if a.dtype == object or a.dtype.kind in "US":
            a = np.array([str(x) for x in a.ravel()], dtype=object).reshape(a.shape)
            parent.create_dataset(name, data=a, dtype=_str_dtype(), track_times=False)
        else:
            parent.create_dataset(name, data=a, track_times=False)


# ---------------------------------------------------------------- CSV tables

def write_csv(df, path: str, force: bool = False, provenance: dict | None = None,
              float_format: str | None = "%.10g", **options) -> None:
    """The one CSV writer: a pandas DataFrame as CSV (no index; numbers with 10 significant
    digits unless `float_format` says), atomically, `-` for stdout, with its provenance
    sidecar `<path>.json` (io.files.write_sidecar: `provenance`, the record of the inputs
    and parameters, else the running command's). options: more DataFrame.to_csv arguments."""
    with atomic_output(path, force, suffix=".csv", provenance=provenance) as tmp:
        df.to_csv(tmp, index=False, float_format=float_format, **options)
