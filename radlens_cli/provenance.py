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
        if isinstance(path, (list, tuple)):   # several inputs in one role: role_1, role_2, ...
            for k, one in enumerate(path, 1):
                rec = {"path": os.fspath(one)}
                if hash_inputs and one != "-" and os.path.isfile(one):
                    rec["sha256"] = sha256_file(one)
                in_records[f"{role}_{k}"] = rec
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


# What the running command declared it read and how (`declare`): the provenance of every
# text table it writes, whichever writer writes it (a CSV has no attributes of its own; its
# `<file>.json` sidecar holds this record).
_RUN: dict = {}


def declare(command: str, inputs: dict | None = None, params: dict | None = None,
            history: list | None = None) -> None:
    """Record the running command's inputs (role -> path), parameters (seed included) and
    the inputs' history; a CSV it then writes gets them in its sidecar (`current`)."""
    _RUN.clear()
    _RUN.update(command=command, inputs=dict(inputs or {}), params=dict(params or {}),
                history=list(history or []))


def reset_run() -> None:
    """Forget what an earlier command declared (each command declares its own)."""
    _RUN.clear()


def declared() -> dict:
    """What the running command declared ({} when nothing)."""
    return dict(_RUN)


def current(command: str | None = None) -> dict:
    """Root attributes for an output of the running command: its declared inputs (hashed),
    parameters and history; without a declaration, the command line, versions and time."""
    if _RUN:
        return build(_RUN["command"], inputs=_RUN["inputs"], params=_RUN["params"],
                     history=_RUN["history"])
    return build(command or "radlens", hash_inputs=False)


def input_records(attrs) -> dict:
    """role -> {path, sha256} of the inputs recorded in an output's attributes ({} if none)."""
    raw = attrs.get("inputs") if attrs is not None else None
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def recorded_label(attrs) -> str:
    """The name of a decoder piped in (`-`): the embeddings it decoded, as it recorded them
    (`emb_ft.h5` -> emb_ft), else `stdin`."""
    emb = input_records(attrs).get("embeddings")
    path = emb.get("path") if isinstance(emb, dict) else None
    if not path or path == "-":
        return "stdin"
    return os.path.splitext(os.path.basename(str(path)))[0]


def checkpoint_identity(path: str, attrs) -> dict:
    """What identifies a compared checkpoint: its decoder file (path, sha256) and the encoder
    checkpoint its embeddings came from (path, sha256, as the decoder recorded them), so a
    report matches an --encoder file to a checkpoint by its hash, never by its name; and
    the encoder's fine-tuning record (run, epoch: `finetune`), by which it orders them."""
    rec = {"decoder": {"path": os.fspath(path)}}
    if path != "-" and os.path.isfile(path):
        rec["decoder"]["sha256"] = sha256_file(path)
    params = attrs.get("params") if attrs is not None else None
    if isinstance(params, bytes):
        params = params.decode()
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    enc = params.get("encoder") if isinstance(params, dict) else None
    if isinstance(enc, dict) and enc.get("path"):
        rec["encoder"] = {k: enc[k] for k in ("path", "sha256") if k in enc}
    emb = input_records(attrs).get("embeddings")
    if isinstance(emb, dict):
        rec["embeddings"] = emb
    power = params.get("power") if isinstance(params, dict) else None
    if isinstance(power, dict):   # decode's small-sample verdict (lens/power.py), for the report
        rec["power"] = power
    if isinstance(params, dict) and "encoder_finetune" in params:
        # the encoder's fine-tuning run and epoch as embed recorded them (None: not a finetune
        # checkpoint); absent from decoders written before radlens recorded it
        rec["finetune"] = params["encoder_finetune"]
    return rec


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


def decoded_attrs(attrs: dict) -> dict:
    """attrs with every JSON-looking string value (a list or an object) parsed; other
    values, and strings that are not JSON, as they are: a provenance record to dump."""
    rec = {}
    for k, v in attrs.items():
        if isinstance(v, str) and v[:1] in "[{":
            try:
                v = json.loads(v)
            except ValueError:
                pass
        rec[k] = v
    return rec


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
