"""Load encoders from every checkpoint layout radlens meets, and write radlens checkpoints.

Accepted by `load_encoder(spec)`:
- radlens checkpoints (`save_radlens_checkpoint`): record arch, in_chans, preprocessing;
- plain state dicts of the built-in ConvNeXtV23D (optionally under `state_dict`/`model`,
  with `module.`/`encoder.`/`backbone.` prefixes);
- FCMAE pre-training checkpoints (ProFound): `{"model": ...}` with `encoder.` prefixes,
  decoder / mask_token / proj / pred entries (dropped), MinkowskiEngine sparse-conv
  weights `*.kernel` (reshaped to dense Conv3d weights), `ln`/`linear` sub-module names
  (dropped) and GRN parameters in the sparse (1, C) shape (reshaped to (1,1,1,1,C));
- TorchScript files (`torch.jit.save`), whose forward gives (B, d);
- `package.module:factory`: a callable returning a custom `torch.nn.Module`.

FCMAE encoders have no final LayerNorm (`norm`): ProFound leaves it at its initial value
(weight 1, bias 0) when fine-tuning from FCMAE, and so does radlens; that is the only
weight allowed to be absent, and the info dict says when it was.
"""

from __future__ import annotations

import importlib
import os
import re
import zipfile

from radlens_cli import log
from radlens_cli.encoders.info import EncoderInfo
from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError, UsageError
from radlens_cli.io.files import atomic_output

RADLENS_KEY = "radlens_checkpoint"
# Entries of FCMAE checkpoints that are not part of the encoder (ProFound drops the same).
_DROP_WORDS = ("decoder", "mask_token", "proj", "pred")
_OPTIONAL = ("norm.weight", "norm.bias")
_PREFIXES = ("module.", "encoder.", "backbone.", "model.", "_orig_mod.")
_FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _torch():
    import torch

    return torch


def is_torchscript(path: str) -> bool:
    """TorchScript archives are zip files holding a `code/` folder and `constants.pkl`."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("constants.pkl") for n in names) and any("/code/" in n for n in names)


class UnsafeCheckpoint(ParameterError):
    """A checkpoint that only full unpickling (which can run code stored in it) would read.

    A data error (exit 1) whose hint names the opt-in as the parameter `{trust_checkpoint}`:
    `trust=True` from Python, `--trust-checkpoint` where the command wrapper prints it.
    """

    def __init__(self, template: str):
        super().__init__(template, "trust_checkpoint", exit_code=EXIT_DATA, plain={"trust_checkpoint": "trust=True"})


# How the refusal tells users to opt in (a template: `{trust_checkpoint}` is the opt-in).
TRUST_HINT = "pass {trust_checkpoint} to load it anyway"


def _safe_globals() -> list:
    """Harmless classes that training checkpoints often pickle beside the weights: numpy
    scalars, arrays and dtypes (under their numpy 1 and numpy 2 module names), argparse
    namespaces (hyper-parameters), paths. Each only rebuilds data; none runs a callable
    chosen by the file."""
    import argparse
    import pathlib

    import numpy as np

    core = getattr(np, "_core", None) or np.core
    out = [argparse.Namespace, np.ndarray, np.dtype,
           pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath]
    for name in ("scalar", "_reconstruct"):
        fn = getattr(core.multiarray, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:  # numpy >= 1.25 pickles np.dtype("f8") as numpy.dtypes.Float64DType
        out += [getattr(dtypes, n) for n in dir(dtypes)
                if n.endswith("DType") and isinstance(getattr(dtypes, n), type)]
    return out


def _unsafe_names(path: str, err: BaseException) -> list[str]:
    """The globals a weights-only read refused, read without unpickling."""
    torch = _torch()
    try:
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - legacy (non-zip) files: take the name from the error
        names = []
    allowed = {n for g in _safe_globals() for n in ([g[1]] if isinstance(g, tuple)
                                                   else [f"{g.__module__}.{g.__qualname__}"])}
    names = [n for n in names if n not in allowed]
    if not names:
        names = re.findall(r"GLOBAL ([\w.]+)", str(err))
    return sorted(dict.fromkeys(names))


def read_checkpoint(path: str, map_location="cpu", trust: bool = False):
    """See read_checkpoint_ex; the object only."""
    return read_checkpoint_ex(path, map_location, trust)[0]


def read_checkpoint_ex(path: str, map_location="cpu", trust: bool = False, hint: str | None = None):
    """(object, fully_unpickled) of a `torch.save` file.

    The object a `torch.save` file holds, read weights-only: tensors, containers, numbers,
    strings and the harmless classes of `_safe_globals`, nothing that runs code.

    A file that needs full unpickling raises UnsafeCheckpoint naming what it would import;
    with trust=True it is unpickled fully after a warning (that runs whatever the file says).
    Full unpickling is never tried before the weights-only read has failed. `hint` ends the
    refusal (default TRUST_HINT; `{trust_checkpoint}` in it names the opt-in, see UnsafeCheckpoint).
    """
    import pickle

    torch = _torch()
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True), False
    except pickle.UnpicklingError as e:
        names = _unsafe_names(path, e)
        if not names:
            why = re.findall(r"(?:WeightsUnpickler|Unpickling) error: *(.+)", str(e))
            why = [w.strip() for w in why if w.strip()]
            raise RadlensError(f"cannot read checkpoint {path}: "
                               f"{why[0] if why else 'not a file written by torch.save'}") from None
        if not trust:
            shown = ", ".join(names[:4]) + (f" (+{len(names) - 4} more)" if len(names) > 4 else "")
            raise UnsafeCheckpoint(f"{path}: refused: reading it needs full unpickling, which can run code "
                                   f"stored in the file (it refers to {shown}); if you trust its source, "
                                   f"{hint or TRUST_HINT}") from None
        log.warn(f"{path}: trusted checkpoint: unpickling it fully (it refers to {', '.join(names[:4])}); "
                 f"code stored in the file runs now")
        try:
            return torch.load(path, map_location=map_location, weights_only=False), True
        except Exception as e2:  # noqa: BLE001
            raise RadlensError(f"cannot read checkpoint {path}: {_first_line(e2)}") from None
    except Exception as e:  # noqa: BLE001 - torn, empty or foreign files
        raise RadlensError(f"cannot read checkpoint {path}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}


def is_safetensors(path: str) -> bool:
    """A safetensors file: 8-byte little-endian header length, then a JSON header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9 or head[8:9] != b"{":
        return False
    n = int.from_bytes(head[:8], "little")
    return 2 <= n <= os.path.getsize(path) - 8


def read_safetensors(path: str) -> dict:
    """{name: tensor} of a safetensors file (plain data: nothing in it can run)."""
    import json

    torch = _torch()
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n).decode("utf-8"))
            data = bytearray(fh.read())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise RadlensError(f"cannot read safetensors file {path}: {e}") from None
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = getattr(torch, _ST_DTYPES[meta["dtype"]])
            begin, end = (int(v) for v in meta["data_offsets"])
            shape = [int(v) for v in meta["shape"]]
            t = torch.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin) \
                if end > begin else torch.empty(0, dtype=dtype)
            out[name] = t.reshape(shape).clone()
        except (KeyError, ValueError, TypeError, RuntimeError) as e:
            raise RadlensError(f"{path}: safetensors entry {name} is damaged or of an unknown type ({e})") from None
    return out


def read_weights(path: str, trust: bool = False) -> tuple[dict, bool]:
    """(state dict, fully_unpickled) from a safetensors file or a torch checkpoint in any of
    the layouts radlens knows (plain, `state_dict` as Lightning writes, `model`, `module`...)."""
    if not os.path.isfile(path):
        raise RadlensError(f"weights file not found: {path}")
    if is_safetensors(path):
        return read_safetensors(path), False
    obj, full = read_checkpoint_ex(path, trust=trust)
    if isinstance(obj, dict) and obj.get(RADLENS_KEY):
        return dict(obj["state_dict"]), full
    return _unwrap(obj, path)[0], full


def load_weights_into(model, sd: dict, path: str) -> dict:
    """Load a state dict into any torch module, stripping the wrapper prefix (Lightning's
    `model.`, DDP's `module.`, ...) that makes its names match; strict: every weight of the
    model must be there with its shape. Returns {'prefix', 'unexpected'}."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    best, best_prefix = -1, ""
    prefixes = sorted({k[:i + 1] for k in sd for i, ch in enumerate(k) if ch == "." and k.count(".", 0, i) < 2}
                      | {""}, key=len)
    for p in prefixes:
        hits = sum(1 for k in sd if k.startswith(p) and k[len(p):] in expected)
        if hits > best:
            best, best_prefix = hits, p
    sd = {k[len(best_prefix):]: v for k, v in sd.items() if k.startswith(best_prefix)}
    missing = [k for k in expected if k not in sd]
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise RadlensError(f"{path}: {len(missing)} weight(s) of the model are not in the file: {shown}")
    bad = [(k, tuple(sd[k].shape), s) for k, s in expected.items() if tuple(sd[k].shape) != s]
    if bad:
        k, got, want = bad[0]
        raise RadlensError(f"{path}: weight {k} has shape {got}, the model needs {want}")
    unexpected = sorted(k for k in sd if k not in expected)
    model.load_state_dict({k: sd[k] for k in expected}, strict=True)
    if unexpected:
        log.warn(f"{path}: {len(unexpected)} entr(y/ies) not in the model ignored: "
                 f"{', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
    return {"prefix": best_prefix, "unexpected": unexpected}


def _is_state_dict(obj) -> bool:
    torch = _torch()
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap(obj, path: str):
    """(state_dict, kind) from the loaded object."""
    if _is_state_dict(obj):
        return dict(obj), "state_dict"
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "encoder", "model_state", "module"):
            if key in obj and _is_state_dict(obj[key]):
                return dict(obj[key]), ("fcmae" if key == "model" else "state_dict")
    torch = _torch()
    if isinstance(obj, torch.nn.Module):
        return dict(obj.state_dict()), "pickled_module"
    what = f"a dict with keys {', '.join(map(str, list(obj)[:8]))}" if isinstance(obj, dict) else type(obj).__name__
    raise RadlensError(f"{path}: not an encoder checkpoint (found {what}); expected a radlens "
                       f"checkpoint, a state dict, an FCMAE {{'model': ...}} checkpoint or TorchScript")


def _strip_prefixes(sd: dict) -> dict:
    """Remove wrapper prefixes (DDP `module.`, FCMAE `encoder.`, ...) until encoder names appear."""
    def has_encoder_names(d):
        return any(k.startswith(("downsample_layers.", "stages.")) for k in d)

    for _ in range(4):
        if has_encoder_names(sd):
            return sd
        for p in _PREFIXES:
            if any(k.startswith(p) for k in sd):
                sd = {k[len(p):] if k.startswith(p) else k: v for k, v in sd.items()}
                break
        else:
            return sd
    return sd


def _drop_non_encoder(sd: dict) -> tuple[dict, list[str]]:
    kept, dropped = {}, []
    for k, v in sd.items():
        parts = k.split(".")
        if (any(w in k for w in _DROP_WORDS) and not k.startswith(("downsample_layers.", "stages."))) \
                or parts[0] in ("head", "fc", "classifier"):
            dropped.append(k)
        else:
            kept[k] = v
    return kept, dropped


def remap_sparse(sd: dict, expected_shapes: dict) -> dict:
    """MinkowskiEngine (sparse) names and shapes -> dense ConvNeXtV23D names and shapes.

    Kernel offsets in MinkowskiEngine run with the first spatial axis fastest:
    weight[o, i, a, b, c] = kernel[a + k*b + k*k*c, i, o] (ProFound's conversion).
    """
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[-1] == "kernel":
            new_k = ".".join(parts[:-1] + ["weight"])
            target = expected_shapes.get(new_k)
            if target is None:
                out[new_k] = v
                continue
            if v.ndim == 3:  # (k^3, in, out)
                kv, cin, cout = v.shape
                ks = int(round(kv ** (1 / 3)))
                out[new_k] = v.permute(2, 1, 0).reshape(cout, cin, ks, ks, ks).permute(0, 1, 4, 3, 2).contiguous()
            elif v.ndim == 2 and target[1] == 1 and "dwconv" in new_k:  # depthwise (k^3, dim)
                kv, dim = v.shape
                ks = int(round(kv ** (1 / 3)))
                out[new_k] = v.permute(1, 0).reshape(dim, 1, ks, ks, ks).permute(0, 1, 4, 3, 2).contiguous()
            elif v.ndim == 2:  # kernel volume 1: MinkowskiEngine stores (in, out)
                cin, cout = v.shape
                out[new_k] = v.permute(1, 0).reshape(cout, cin, 1, 1, 1).contiguous()
            else:
                out[new_k] = v
            continue
        if len(parts) >= 3 and parts[-2] in ("ln", "linear"):
            k = ".".join(parts[:-2] + parts[-1:])
        out[k] = v
    for k, v in list(out.items()):
        target = expected_shapes.get(k)
        if target is None or tuple(v.shape) == tuple(target):
            continue
        if v.numel() == _numel(target) and (k.endswith("bias") or ".grn." in k):
            out[k] = v.reshape(target)  # sparse biases (1, C) and GRN (1, C)
    return out


def checkpoint_filter(sd: dict, spec: str, arch: str | None = None, in_chans: int | None = None):
    """A checkpoint's state dict as ConvNeXtV23D weights (timm's checkpoint_filter_fn, for this family).

    Wrapper prefixes (DDP, FCMAE, Lightning) stripped, decoder/head entries dropped, sparse
    MinkowskiEngine kernels (FCMAE pre-training) remapped to dense ones. Returns
    (state dict, dropped keys, whether it was sparse).
    """
    sd = _strip_prefixes(sd)
    sd, dropped = _drop_non_encoder(sd)
    sparse = any(k.endswith(".kernel") or ".ln." in k or ".linear." in k for k in sd)
    if sparse or "downsample_layers.0.0.weight" not in sd:
        # shapes of the model the stem says it is, for reshaping the sparse entries
        ref_arch, ref_chans = _guess_from_sparse(sd, spec, arch, in_chans)
        sd = remap_sparse(sd, {k: tuple(v.shape) for k, v in
                               _empty_encoder(ref_arch, ref_chans, "meta").state_dict().items()})
    return sd, dropped, sparse


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def infer_arch(sd: dict, path: str = "checkpoint") -> tuple[str, int]:
    """(arch, in_chans) from the stem weight's shape and the number of blocks per stage."""
    # heavy: loads torch
    from radlens_cli.encoders.convnextv2 import ARCHS

    stem = sd.get("downsample_layers.0.0.weight")
    if stem is None or stem.ndim != 5:
        raise RadlensError(f"{path}: no ConvNeXt-V2 stem weight (downsample_layers.0.0.weight); "
                           f"not a built-in encoder checkpoint")
    in_chans = int(stem.shape[1])
    dims = []
    for i in range(4):
        w = sd.get(f"stages.{i}.0.dwconv.weight")
        dims.append(int(w.shape[0]) if w is not None else -1)
    depths = []
    for i in range(4):
        idx = {int(k.split(".")[2]) for k in sd if k.startswith(f"stages.{i}.") and k.split(".")[2].isdigit()}
        depths.append(max(idx) + 1 if idx else 0)
    for name, (d, w) in ARCHS.items():
        if tuple(depths) == d and tuple(dims) == w:
            return name, in_chans
    raise RadlensError(f"{path}: encoder with depths {tuple(depths)} and dims {tuple(dims)} matches no "
                       f"built-in architecture ({', '.join(ARCHS)})")


def describe_arch(sd: dict) -> str:
    try:
        name, chans = infer_arch(sd)
        return f"{name} with {chans} input channel(s)"
    except RadlensError:
        return "an unknown layout"


def load_state_into(model, sd: dict, path: str, arch: str) -> dict:
    """Load `sd` into `model`, strictly for encoder weights; returns missing-optional/unexpected."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in sd and k not in _OPTIONAL]
    if missing:
        shown = ", ".join(missing[:6]) + (f" (+{len(missing) - 6} more)" if len(missing) > 6 else "")
        raise RadlensError(f"{path}: checkpoint lacks {len(missing)} encoder weight(s) of {arch}: {shown}")
    bad = [(k, tuple(sd[k].shape), s) for k, s in expected.items() if k in sd and tuple(sd[k].shape) != s]
    if bad:
        k, got, want = bad[0]
        raise RadlensError(f"{path}: weight {k} has shape {got}, {arch} needs {want} "
                           f"(checkpoint looks like {describe_arch(sd)})")
    unexpected = sorted(k for k in sd if k not in expected)
    absent_optional = [k for k in _OPTIONAL if k not in sd]
    model.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False)
    if unexpected:
        log.warn(f"{path}: {len(unexpected)} unexpected checkpoint entr(y/ies) ignored: "
                 f"{', '.join(unexpected[:6])}{' ...' if len(unexpected) > 6 else ''}")
    if absent_optional:
        log.info(f"{path}: no final LayerNorm in the checkpoint (FCMAE encoder); using identity "
                 f"(weight 1, bias 0) as ProFound does")
    return {"unexpected": unexpected, "absent_optional": absent_optional}


def _load_factory(spec: str):
    torch = _torch()
    mod_name, _, fn_name = spec.partition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise RadlensError(f"encoder factory {spec}: cannot import module {mod_name}: {e}") from None
    fn = getattr(mod, fn_name, None)
    if fn is None or not callable(fn):
        raise RadlensError(f"encoder factory {spec}: {mod_name} has no callable {fn_name}")
    try:
        model = fn()
    except Exception as e:  # noqa: BLE001 - user code: report it in one line
        raise RadlensError(f"encoder factory {spec} failed: {type(e).__name__}: {e}") from None
    if not isinstance(model, torch.nn.Module):
        raise RadlensError(f"encoder factory {spec}: returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_encoder(spec: str, arch: str | None = None, in_chans: int | None = None,
                 map_location="cpu", trust: bool = False, weights: str | None = None):
    """(model in eval mode, info) for a checkpoint path, TorchScript file or `module:factory`.

    info: source, arch, in_chans, embed_dim (None when only a forward pass can tell),
    preprocessing (dict recorded in a radlens checkpoint, else None), unexpected keys,
    absent optional keys, dropped keys, extra (the other entries of a radlens checkpoint,
    e.g. `finetune`), trusted (whether the file was unpickled fully, see read_checkpoint_ex).
    Checkpoint files are read weights-only unless trust=True; TorchScript files and
    factories run code by design. `weights` (a state dict, Lightning or safetensors file) is
    loaded into a factory's or TorchScript model.
    """
    # heavy: loads torch
    from radlens_cli.encoders.convnextv2 import canonical_arch

    if arch is not None:
        arch = canonical_arch(arch)
    info = EncoderInfo(spec=spec, arch=arch, in_chans=in_chans)
    if not os.path.exists(spec) and _FACTORY_RE.match(spec):
        model = _load_factory(spec)
        info.update(source="factory", arch=arch or "custom")
        info.embed_dim = _dims_of(model)
        if weights:
            _weights_into(model, weights, trust, info)
        return model.eval(), info
    if not os.path.exists(spec):
        raise RadlensError(f"encoder checkpoint not found: {spec}")
    if os.path.isdir(spec):
        raise RadlensError(f"encoder checkpoint is a folder, not a file: {spec}")
    if is_torchscript(spec):
        torch = _torch()
        try:
            model = torch.jit.load(spec, map_location=map_location)
        except Exception as e:  # noqa: BLE001
            raise RadlensError(f"cannot load TorchScript encoder {spec}: {str(e).splitlines()[0]}") from None
        info.update(source="torchscript", arch=arch or "torchscript")
        if weights:
            _weights_into(model, weights, trust, info)
        return model.eval(), info
    if weights:
        raise UsageError(f"{spec} holds its own weights; a separate weights file is for "
                         f"package.module:factory and TorchScript encoders")
    if is_safetensors(spec):
        obj = read_safetensors(spec)
    else:
        obj, info.trusted = read_checkpoint_ex(spec, map_location, trust=trust)
    preprocessing = None
    if isinstance(obj, dict) and obj.get(RADLENS_KEY):
        try:
            sd = dict(obj["state_dict"])
            rec_arch, rec_chans = canonical_arch(str(obj["arch"])), int(obj["in_chans"])
        except (KeyError, TypeError, ValueError) as e:
            raise RadlensError(f"{spec}: radlens checkpoint is incomplete (missing {e})") from None
        preprocessing = obj.get("preprocessing")
        info.extra = {k: v for k, v in obj.items()
                         if k not in (RADLENS_KEY, "arch", "in_chans", "state_dict", "preprocessing")}
        if arch is not None and arch != rec_arch:
            raise ParameterError(f"{spec}: checkpoint is {rec_arch}, not {{arch}} {arch}", "arch", exit_code=EXIT_DATA)
        if in_chans is not None and int(in_chans) != rec_chans:
            raise RadlensError(f"{spec}: checkpoint has {rec_chans} input channel(s), not {in_chans}")
        arch, in_chans, kind = rec_arch, rec_chans, "radlens"
    else:
        sd, kind = _unwrap(obj, spec)
    sd, dropped, sparse = checkpoint_filter(sd, spec, arch, in_chans)
    if sparse:
        kind = "fcmae" if kind in ("fcmae", "state_dict") else kind
    found_arch, found_chans = infer_arch(sd, spec)
    if arch is not None and arch != found_arch:
        raise ParameterError(f"{spec}: checkpoint holds {found_arch} ({found_chans} input channel(s)), "
                             f"not {{arch}} {arch}", "arch", exit_code=EXIT_DATA)
    if in_chans is not None and int(in_chans) != found_chans:
        raise RadlensError(f"{spec}: checkpoint's encoder takes {found_chans} input channel(s), "
                           f"not {in_chans} (one per modality)")
    model = _empty_encoder(found_arch, found_chans)
    rep = load_state_into(model, sd, spec, found_arch)
    if rep["absent_optional"]:
        with _torch().no_grad():  # the final LayerNorm at its initial value (identity)
            model.norm.weight.fill_(1.0)
            model.norm.bias.zero_()
    info.update(source=kind, arch=found_arch, in_chans=found_chans, embed_dim=model.dims[-1],
                preprocessing=preprocessing, dropped=dropped, **rep)
    if dropped:
        log.debug(f"{spec}: dropped {len(dropped)} non-encoder entries (decoder, mask token, head, ...)")
    return model.eval(), info


def _weights_into(model, weights: str, trust: bool, info: EncoderInfo) -> None:
    sd, full = read_weights(weights, trust=trust)
    rep = load_weights_into(model, sd, weights)
    info.update(weights=weights, weights_prefix=rep["prefix"], unexpected=rep["unexpected"],
                trusted=bool(info.trusted) or full)


def _empty_encoder(arch: str, in_chans: int, device: str = "cpu"):
    """The architecture without running its random initialisation (every weight is loaded)."""
    torch = _torch()
    # heavy: loads torch
    from radlens_cli.encoders.convnextv2 import build_encoder

    with torch.device("meta"):
        model = build_encoder(arch, in_chans)
    return model if device == "meta" else model.to_empty(device=device)


def _guess_from_sparse(sd: dict, spec: str, arch, in_chans) -> tuple[str, int]:
    """Architecture of a sparse (FCMAE) state dict before remapping, from its stem and blocks."""
    # heavy: loads torch
    from radlens_cli.encoders.convnextv2 import ARCHS

    stem = sd.get("downsample_layers.0.0.weight")
    if stem is None:
        kern = sd.get("downsample_layers.0.0.kernel")
        if kern is None:
            raise RadlensError(f"{spec}: no ConvNeXt-V2 stem (downsample_layers.0.0) in the checkpoint; "
                               f"not a built-in encoder checkpoint")
        chans = int(kern.shape[1]) if kern.ndim == 3 else int(kern.shape[0])
        dim0 = int(kern.shape[-1])
    else:
        chans, dim0 = int(stem.shape[1]), int(stem.shape[0])
    depths = []
    for i in range(4):
        idx = {int(k.split(".")[2]) for k in sd if k.startswith(f"stages.{i}.") and k.split(".")[2].isdigit()}
        depths.append(max(idx) + 1 if idx else 0)
    for name, (d, w) in ARCHS.items():
        if w[0] == dim0 and tuple(depths) == d:
            return name, chans
    if arch is not None:
        return arch, in_chans or chans
    raise RadlensError(f"{spec}: encoder with depths {tuple(depths)} and first width {dim0} matches no "
                       f"built-in architecture")


def _dims_of(model) -> int | None:
    dims = getattr(model, "dims", None)
    if dims:
        return int(list(dims)[-1])
    return None


def save_radlens_checkpoint(path: str, model, arch: str, in_chans: int, preprocessing: dict | None,
                            extra: dict | None = None, force: bool = False) -> None:
    """Write {"radlens_checkpoint": 1, arch, in_chans, state_dict, preprocessing, **extra} atomically."""
    torch = _torch()
    # heavy: loads torch
    from radlens_cli.encoders.convnextv2 import canonical_arch

    if path == "-":
        raise UsageError("a checkpoint must be written to a file, not stdout")
    sd = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {RADLENS_KEY: 1, "arch": canonical_arch(arch), "in_chans": int(in_chans),
               "state_dict": sd, "preprocessing": dict(preprocessing) if preprocessing else None}
    for k, v in (extra or {}).items():
        if k in payload:
            raise ValueError(f"extra key {k!r} would overwrite a checkpoint field")
        payload[k] = v
    with atomic_output(path, force) as tmp:
        torch.save(payload, tmp)


def describe_checkpoint(path: str, hint: str | None = None) -> dict:
    """What a model file holds, read weights-only (TorchScript is not loaded: it is code):
    format, kind, architecture and input channels where known, tensor and parameter counts,
    and what a radlens checkpoint records (preprocessing, provenance, fine-tuning).

    A file that needs full unpickling is refused (never unpickled here, whatever the caller
    trusts); `hint` ends that refusal (see read_checkpoint_ex)."""
    out = {"path": path, "format": None, "kind": None, "arch": None, "in_chans": None}
    if is_torchscript(path):
        out.update(format="torchscript", kind="TorchScript archive (code by design; not loaded)")
        return out
    if is_safetensors(path):
        sd = read_safetensors(path)
        out.update(format="safetensors", kind="state dict")
        obj = None
    else:
        obj, _ = read_checkpoint_ex(path, hint=hint or "describe_checkpoint never unpickles it fully; load it "
                                                       "with load_encoder(..., trust=True)")
        out["format"] = "torch"
        if isinstance(obj, dict) and obj.get(RADLENS_KEY):
            sd = dict(obj.get("state_dict") or {})
            out.update(kind="radlens checkpoint", arch=obj.get("arch"), in_chans=obj.get("in_chans"),
                       preprocessing=obj.get("preprocessing"))
            if isinstance(obj.get("finetune"), dict):
                ft = obj["finetune"]
                out["finetune"] = {k: ft.get(k) for k in ("task", "target", "classes", "metric", "best_epoch",
                                                          "best_metric")}
            if isinstance(obj.get("init"), dict):
                out["init"] = obj["init"]
            if isinstance(obj.get("provenance"), dict):
                out["provenance"] = obj["provenance"]
        else:
            try:
                sd, kind = _unwrap(obj, path)
            except RadlensError:
                sd, kind = {}, "not an encoder checkpoint"
            if isinstance(obj, dict) and "pytorch-lightning_version" in obj:
                kind = "Lightning checkpoint"
                out["lightning"] = {k: obj.get(k) for k in ("pytorch-lightning_version", "epoch", "global_step")}
            out["kind"] = {"fcmae": "FCMAE / ProFound ({'model': ...})", "state_dict": "state dict"}.get(kind, kind)
            if isinstance(obj, dict):
                out["keys"] = [str(k) for k in list(obj)[:20]]
    if out["arch"] is None and sd:
        try:
            enc = _strip_prefixes(_drop_non_encoder(_strip_prefixes(dict(sd)))[0])
            if any(k.endswith(".kernel") for k in enc) or "downsample_layers.0.0.weight" not in enc:
                name, chans = _guess_from_sparse(enc, path, None, None)
            else:
                name, chans = infer_arch(enc, path)
            out.update(arch=name, in_chans=chans)
        except (RadlensError, KeyError, ValueError, AttributeError):
            pass
    tensors = [v for v in sd.values() if hasattr(v, "numel")]
    out["tensors"] = len(tensors)
    out["parameters"] = int(sum(int(v.numel()) for v in tensors))
    return out
