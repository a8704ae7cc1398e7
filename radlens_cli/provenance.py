"""Provenance attributes written into every output (MRtrix/samtools style history)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import platform
import shlex
import sys
from importlib import metadata

from radlens_cli import __version__

_HASH_CACHE: dict[tuple[str, float, int], str] = {}

# What a result made with radlens should cite: the tool, the method papers it implements
# and PyRadiomics. CITATION.cff holds the same with full author lists; keep them in step.
CITE = (f"radlens {__version__} (its CITATION.cff); "
        "Wang Y, Chen Y, Yan W, et al. What Fine-Tuning Changes: A Radiomic Lens on Prostate Foundation "
        "Model Representations. MIDL 2026 (fit-share, decode, compare, stats); "
        "Prinzi F, Militello C, Zarcaro C, et al. Rad4XCNN: a new agnostic method for post-hoc global "
        "explanation of CNN-derived features by means of radiomics. Computer Methods and Programs in "
        "Biomedicine 2025, arXiv:2405.02334 (correlate); "
        "van Griethuysen JJM, et al. Computational Radiomics System to Decode the Radiographic Phenotype. "
        "Cancer Research 2017;77(21):e104-e107 (extract-radiomics)")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file, or of every file below a folder (DICOM series), cached by mtime/size."""
    path = os.fspath(path)
    if os.path.isdir(path):
        h = hashlib.sha256()
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).encode())
                h.update(sha256_file(full).encode())
        return h.hexdigest()
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime, st.st_size)
    if key in _HASH_CACHE:
        return _HASH_CACHE[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def created_timestamp() -> str:
    """ISO time of creation; SOURCE_DATE_EPOCH pins it so same-seed outputs are byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        t = _dt.datetime.fromtimestamp(int(epoch), tz=_dt.timezone.utc)
    else:
        t = _dt.datetime.now(tz=_dt.timezone.utc).replace(microsecond=0)
    return t.isoformat()


def library_versions(names=("numpy", "scipy", "h5py", "pandas", "torch", "SimpleITK",
                            "pyradiomics-bhklab", "typer")) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def command_line() -> str:
    argv = list(sys.argv)
    if argv:
        argv[0] = "radlens" if argv[0].endswith(("radlens", "__main__.py", "-c")) else argv[0]
    return shlex.join(argv)


def build(command: str, inputs: dict[str, str] | None = None, params: dict | None = None,
          history: list | None = None, hash_inputs: bool = True) -> dict[str, str]:
    """Root attributes for an output file.

    inputs: role -> path; hashed with sha256 (folders hashed file by file).
    params: JSON-serialisable parameters, seed included.
    history: provenance records carried over from the inputs (see `history_of`).
    """
    inputs = inputs or {}
    in_records = {}
    for role, path in inputs.items():
        if path is None:
            continue
        rec = {"path": os.fspath(path)}
        if hash_inputs and path != "-" and os.path.exists(path):
            rec["sha256"] = sha256_file(path)
        in_records[role] = rec
    own = {
        "radlens_version": __version__,
        "command": command_line(),
        "subcommand": command,
        "created": created_timestamp(),
        "inputs": in_records,
        "params": params or {},
        "versions": library_versions(),
    }
    hist = list(history or [])
    hist.append({k: own[k] for k in ("subcommand", "command", "created", "radlens_version")})
    return {
        "radlens_version": __version__,
        "command": own["command"],
        "created": own["created"],
        "inputs": json.dumps(in_records, sort_keys=True),
        "params": json.dumps(own["params"], sort_keys=True, default=str),
        "versions": json.dumps(own["versions"], sort_keys=True),
        "history": json.dumps(hist, default=str),
        "cite": CITE,
    }


def history_of(attrs) -> list:
    """The history list stored in an input's attributes (empty when absent)."""
    raw = attrs.get("history") if attrs is not None else None
    if raw is None:
        return []
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return list(json.loads(raw))
    except (TypeError, ValueError):
        return []


def merged_history(*attr_sets) -> list:
    """Histories of several inputs, in order, without repeating identical records."""
    seen, out = set(), []
    for attrs in attr_sets:
        for rec in history_of(attrs):
            key = json.dumps(rec, sort_keys=True, default=str)
            if key not in seen:
                seen.add(key)
                out.append(rec)
    return out


def json_attr(attrs: dict, key: str, default):
    """A JSON-valued root attribute (`params`, `history`, `failures`, ...) parsed; `default` when
    absent or not JSON. Values already parsed (lists, dicts) pass through."""
    raw = (attrs or {}).get(key)
    if raw is None:
        return default
    if isinstance(raw, (list, dict)):
        return raw
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return default
