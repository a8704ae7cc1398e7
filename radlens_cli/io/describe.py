"""What a file radlens reads or writes holds and how it was made: `radlens info`'s
describe_file (HDF5, CSV with its sidecar, report HTML, JSON, PNG, npz, images, model
files, ONNX) and describe_text (its lines)."""

from __future__ import annotations

import json

from radlens_cli.errors import RadlensError
from radlens_cli.io.files import input_path, read_sidecar, sidecar_path
from radlens_cli.io.formats import is_hdf5, open_hdf5_file, read_h5_attrs
from radlens_cli.io.tables import text_format

JSON_ATTRS = ("params", "inputs", "history", "failures", "skipped", "versions", "radlens_part")


def _hdf5(real: str, shown: str) -> dict:
    import h5py

    with open_hdf5_file(real) as f:
        attrs = read_h5_attrs(f)
        datasets = {}
        f.visititems(lambda name, obj: datasets.__setitem__(name, list(obj.shape))
                     if isinstance(obj, h5py.Dataset) else None)
    out = {"path": shown, "format": "HDF5", "schema": attrs.get("radlens_schema"), "datasets": datasets}
    for key in ("radlens_version", "command", "created", "cite"):
        if key in attrs:
            out[key] = attrs[key]
    for key in JSON_ATTRS:
        if key in attrs:
            try:
                out[key] = json.loads(attrs[key])
            except (TypeError, ValueError):
                out[key] = attrs[key]
    return out


def _text_table(real: str, shown: str, path: str) -> dict:
    """A CSV/TSV output (its provenance from the sidecar), or a cohort manifest."""
    import pandas as pd

    sep, compression = text_format(real, path)
    try:
        df = pd.read_csv(real, sep=sep, compression=compression, dtype=str, keep_default_na=False)
    except Exception as e:  # noqa: BLE001 - pandas raises many types for malformed text
        raise RadlensError(f"{shown}: not a radlens file (HDF5, CSV, checkpoint, ONNX): {e}") from None
    out = {"path": shown, "format": "TSV" if sep == "\t" else "CSV", "rows": len(df),
           "columns": list(map(str, df.columns[:8])) + (["..."] if len(df.columns) > 8 else []),
           "n_columns": len(df.columns)}
    side = read_sidecar(path) if path != "-" else None
    if side:
        hist = side.get("history") if isinstance(side.get("history"), list) else []
        made_by = hist[-1].get("subcommand") if hist and isinstance(hist[-1], dict) else None
        schema = side.get("radlens_schema")
        # a plain sidecar's schema says only that it is one: name the command that wrote the table
        out["schema"] = schema if schema != "csv-provenance/1" else (
            (f"{made_by} output" if made_by else "radlens table") + f" ({schema}, provenance in its sidecar)")
        out["sidecar"] = sidecar_path(path)
        for key in ("radlens_version", "command", "created", *JSON_ATTRS):
            if key in side:
                out[key] = side[key]
    elif "case_id" in df.columns:
        numeric = [c for c in df.columns if c not in ("case_id", "split")
                   and pd.to_numeric(df[c], errors="coerce").notna().all()]
        if len(numeric) < len(df.columns) - 1 - ("split" in df.columns):
            out["schema"] = "cohort manifest"
            out["split"] = ("column" if "split" in df.columns else "none (derived 7:1:2 from case_id)")
        else:
            out["schema"] = "case table (CSV, no provenance sidecar)"
    return out


def _html(real: str, shown: str) -> dict:
    """An HTML file: a radlens report shows the provenance block it embeds (inputs with
    sha256, params, command, versions); any other HTML is said to be one."""
    import re

    with open(real, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    title = re.search(r"<title>(.*?)</title>", text, re.S)
    out = {"path": shown, "format": "HTML", "bytes": len(text.encode("utf-8"))}
    if title:
        out["title"] = _unescape(title.group(1).strip())
    m = re.search(r'<meta name="radlens-provenance" content="([^"]*)">', text)
    if m is None:
        gen = re.search(r'<meta name="generator" content="([^"]*)"', text)
        out["schema"] = ("radlens report (written before reports embedded their provenance)"
                         if gen and "radlens" in gen.group(1) else None)
        return out
    try:
        rec = json.loads(_unescape(m.group(1)))
    except ValueError:
        raise RadlensError(f"{shown}: the report's provenance block is not valid JSON") from None
    out["schema"] = rec.get("radlens_schema", "report/1")
    out["figures"] = len(re.findall(r"<img ", text))
    for key in ("radlens_version", "command", "created", "cite", *JSON_ATTRS):
        if key in rec:
            out[key] = rec[key]
    return out


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def _json(real: str, shown: str, path: str) -> dict:
    """A JSON file: a CSV's provenance sidecar (which table it describes), synth's
    provenance.json, or any JSON (its top-level keys)."""
    try:
        with open(real, encoding="utf-8") as fh:
            rec = json.load(fh)
    except ValueError as e:
        raise RadlensError(f"{shown}: looks like JSON but does not parse: {e}") from None
    out = {"path": shown, "format": "JSON"}
    if not isinstance(rec, dict):
        out["schema"] = f"JSON {type(rec).__name__} of {len(rec) if hasattr(rec, '__len__') else 1} item(s)"
        return out
    schema = rec.get("radlens_schema")
    if schema == "csv-provenance/1":
        out["schema"] = f"provenance sidecar of {rec.get('file', 'a CSV')}"
        out["describes"] = rec.get("file")
    elif schema:
        out["schema"] = schema
    elif {"command", "radlens_version"} & set(rec):
        out["schema"] = "radlens provenance record"
    else:
        out["schema"] = None
        out["keys"] = list(rec)[:12]
    for key in ("radlens_version", "command", "created", *JSON_ATTRS):
        if key in rec:
            out[key] = rec[key]
    return out


def _png(real: str, shown: str) -> dict:
    with open(real, "rb") as fh:
        head = fh.read(24)
    w, h = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return {"path": shown, "format": "PNG image", "schema": "image (a report figure when under --figures)",
            "size": f"{w} x {h} px"}


def _npz(real: str, shown: str) -> dict:
    import numpy as np

    with np.load(real, allow_pickle=False) as z:
        arrays = {k: list(z[k].shape) for k in z.files}
    return {"path": shown, "format": "NumPy archive (.npz)",
            "schema": "radlens cache entry (a per-case cache file; safe to delete)", "datasets": arrays}


def _image(real: str, shown: str) -> dict:
    import SimpleITK as sitk  # heavy: only for an image file

    r = sitk.ImageFileReader()
    r.SetFileName(real)
    try:
        r.ReadImageInformation()
    except RuntimeError as e:
        raise RadlensError(f"{shown}: cannot read as an image: {str(e).splitlines()[0][:200]}") from None
    return {"path": shown, "format": "medical image", "schema": "image (cohort data, not a radlens output)",
            "size": "x".join(map(str, r.GetSize())), "spacing": [round(v, 4) for v in r.GetSpacing()],
            "pixel_type": sitk.GetPixelIDValueAsString(r.GetPixelID())}


def _checkpoint(real: str, shown: str, describe_checkpoint) -> dict:
    """A radlens / ProFound / FCMAE / Lightning checkpoint, state dict or safetensors file,
    read weights-only (no code runs; TorchScript is described, not loaded)."""
    if describe_checkpoint is None:
        raise RadlensError(f"{shown}: a model file; pass checkpoint=radlens_cli.encoders.checkpoints."
                           f"describe_checkpoint to describe it")
    d = describe_checkpoint(real, hint="load it with embed, layers or finetune --trust-checkpoint (info never does)")
    kind = d.get("kind") or ""
    schema = {"radlens checkpoint": "radlens checkpoint/1"}.get(kind, kind)
    out = {"path": shown, "format": f"model file ({d['format']})", "schema": schema,
           "params": {k: v for k, v in d.items() if k not in ("path", "provenance") and v is not None}}
    for key in ("arch", "in_chans", "preprocessing", "tensors", "parameters"):
        if d.get(key) is not None:
            out[key] = d[key]
    if isinstance(d.get("provenance"), dict):
        out["history"] = [d["provenance"]]
    return out


def _onnx(real: str, shown: str) -> dict:
    try:
        import onnx
    except ImportError:
        raise RadlensError(f"{shown}: an ONNX file; install `onnx` to inspect it") from None
    try:
        m = onnx.load(real, load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise RadlensError(f"{shown}: cannot read ONNX model: {str(e).splitlines()[0][:200]}") from None

    def shape(v):
        dims = v.type.tensor_type.shape.dim
        return [d.dim_param or d.dim_value for d in dims]

    inits = {i.name for i in m.graph.initializer}
    return {"path": shown, "format": "ONNX", "schema": "onnx model", "producer": m.producer_name,
            "opset": [o.version for o in m.opset_import],
            "inputs": {v.name: shape(v) for v in m.graph.input if v.name not in inits},
            "outputs": {v.name: shape(v) for v in m.graph.output},
            "parameters": int(sum(int(__import__("numpy").prod(i.dims)) for i in m.graph.initializer))}


def describe_file(path: str, checkpoint=None) -> dict:
    """What a file radlens reads or writes holds (what `radlens info` shows): HDF5 outputs,
    CSV outputs (with their provenance sidecar), reports (HTML, with their embedded
    provenance), JSON sidecars, figures, manifests, images, checkpoints and ONNX models.

    checkpoint: the model-file reader, encoders.checkpoints.describe_checkpoint (weights-only;
    io sits below the encoders, so it is handed in)."""
    real = input_path(path)
    shown = "stdin" if path == "-" else path
    with open(real, "rb") as fh:
        head = fh.read(512)
    low = path.lower()
    lead = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if is_hdf5(real):
        return _hdf5(real, shown)
    if low.endswith(".onnx"):
        return _onnx(real, shown)
    if lead.startswith((b"<!doctype html", b"<html")) or low.endswith((".html", ".htm")):
        return _html(real, shown)
    if lead[:1] in (b"{", b"[") or low.endswith(".json"):
        return _json(real, shown, path)
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return _png(real, shown)
    if low.endswith(".npz"):
        return _npz(real, shown)
    if low.endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")):
        return _image(real, shown)
    if head[:2] == b"PK" or head[:1] == b"\x80" or \
            low.endswith((".pt", ".pth", ".ckpt", ".bin", ".tar", ".safetensors", ".ts")):
        return _checkpoint(real, shown, checkpoint)
    return _text_table(real, shown, path)


def describe_text(result: dict) -> list[str]:
    """describe_file's record as `radlens info` prints it, one line each."""
    lines = [f"{result['path']}: {result.get('schema') or 'not a radlens file'} ({result['format']})"]
    for name, shape in result.get("datasets", {}).items():
        lines.append(f"  {name}  {'x'.join(map(str, shape)) or 'scalar'}")
    skip = {"path", "schema", "format", "datasets", "history", "params", "versions", "inputs"}
    for key, val in result.items():
        if key not in skip and val not in (None, [], {}):
            lines.append(f"{key}: {val if isinstance(val, (str, int, float)) else json.dumps(val, default=str)}")
    for role, rec in (result.get("inputs") or {}).items():
        if isinstance(rec, dict):   # an ONNX model's inputs are tensor shapes, shown above
            lines.append(f"input {role}: {rec.get('path', '')}"
                         + (f"  sha256 {rec['sha256']}" if rec.get("sha256") else ""))
    if "params" in result:
        lines.append(f"params: {json.dumps(result['params'], sort_keys=True, default=str)}")
    for rec in result.get("history", []):
        lines.append(f"history: {rec.get('created', '')}  {rec.get('command', '')}")
    return lines
