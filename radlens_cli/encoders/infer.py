"""From a loaded encoder to (batch, d) embeddings: device, fingerprint, layer and pooling.

Everything that depends on what kind of encoder runs (built-in, TorchScript, factory;
ONNX in onnx_encoder.py) lives here behind one `Embedder` object, so the batch loop
(embedding.py) stays the same whatever the model is.
"""

from __future__ import annotations

import hashlib

import numpy as np

from radlens_cli.encoders.checkpoints import load_encoder
from radlens_cli.encoders.info import EncoderInfo
from radlens_cli.encoders.layers import (CallCapture, call_shapes, named_module, parse_layer, pool_features,
                                         resolve_layer, resolve_torchscript_layer, run_to_call,
                                         torchscript_call_shapes, unknown_layer)
from radlens_cli.encoders.onnx_encoder import OnnxEmbedder, _dims, infer_shapes, read_graph
from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError, UsageError


def model_fingerprint(model) -> str:
    """sha256 over the model's parameters and buffers (names, shapes, bytes)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.float()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class Embedder:
    """A torch encoder on a device with a layer and pooling: (B, C, ...) tensor -> (B, d) float64.

    A sub-module layer (NAME, NAME#k, NAME#last; see encoders/layers.py) is resolved on one
    input before the first batch (check_config does it on a zero input of the configured
    shape, else the first batch does): `layer` then holds the label outputs record (plain
    NAME for a module that runs once) and `layer_calls` how often the module runs.
    """

    def __init__(self, model, info: EncoderInfo, spec: str, layer: str, pool: str, device, module=None,
                 torchscript: bool = False):
        self.model, self.info, self.spec, self.layer, self.pool, self.device = model, info, spec, layer, pool, device
        self.use_amp = device.type == "cuda"
        self.fingerprint = model_fingerprint(model)
        self.module = module  # the hooked sub-module for a dotted --layer, else None
        self.torchscript = torchscript  # a TorchScript sub-module: its calls are marked in a copy
        self.layer_calls = None  # how often the layer's module runs per forward pass, once resolved
        self._capture = self._layer_fn = None

    @property
    def resolved(self) -> bool:
        return self.module is None and not self.torchscript or self.layer_calls is not None

    def resolve(self, example) -> None:
        """Pick the layer's call on `example` (one input): errors for a reused module named
        without a call list the calls and their shapes. Done once."""
        import torch

        if self.resolved:
            return
        try:
            with torch.no_grad():
                if self.torchscript:
                    choice = resolve_torchscript_layer(self.model, self.layer, example, spec=self.spec)
                else:
                    choice = resolve_layer(self.model, self.layer, example, spec=self.spec)
        except (RuntimeError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RadlensError(f"{self.spec}: forward pass failed on input {tuple(example.shape)}: {first}") from None
        if self.torchscript:
            self._layer_fn = choice.function()
        else:
            self._capture = CallCapture(call=choice.call, stop=True, name=choice.name)
            choice.module.register_forward_hook(self._capture.hook)
        self.layer, self.layer_calls = choice.label, choice.calls

    def _forward(self, x):
        # heavy: loads torch
        from radlens_cli.encoders.convnextv2 import extract_embedding

        if not self.resolved:
            self.resolve(x[:1])
        if self._layer_fn is not None:
            return pool_features(self._layer_fn(x), self.pool)
        if self._capture is None:
            return extract_embedding(self.model, x, self.layer, self.pool)
        return pool_features(run_to_call(self.model, self._capture, x), self.pool)

    @property
    def source(self) -> str:
        return self.info.source

    @property
    def arch(self) -> str:
        return self.info.arch

    def check_config(self, cfg) -> None:
        """Refuse preprocessing the model cannot take, before any case is read."""
        import torch

        if hasattr(self.model, "dims") and hasattr(self.model, "stages") and min(cfg.crop) < 16:
            raise ParameterError(f"{{crop}} {','.join(map(str, cfg.crop))}: the ConvNeXt-V2 downsamples 16-fold; "
                                 f"every side of the box needs at least 16 voxels", "crop")
        if not self.resolved:
            self.resolve(torch.zeros((1,) + tuple(cfg.tensor_shape()), device=self.device))

    def __call__(self, x, first_case: str = "") -> np.ndarray:
        import torch

        x = x.to(self.device, non_blocking=True)
        try:
            if self.use_amp:
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    e = self._forward(x)
            else:
                e = self._forward(x)
        except (RuntimeError, ValueError, TypeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RadlensError(f"{self.spec}: forward pass failed on input {tuple(x.shape)} "
                               f"(case {first_case}...): {first}") from None
        e = e.float().cpu().numpy().astype(np.float64)
        if e.ndim != 2 or e.shape[0] != x.shape[0]:
            raise RadlensError(f"{self.spec}: expected a (batch, d) embedding, got shape {tuple(e.shape)}")
        return e


def is_onnx(spec: str) -> bool:
    return str(spec).lower().endswith(".onnx")


def load_embedder(spec: str, arch: str | None = None, layer: str = "final", pool: str = "mean",
                  device=None, trust: bool = False, modalities: list | None = None,
                  weights: str | None = None):
    """Load the encoder `spec` (a checkpoint, TorchScript, module:factory or .onnx file) for
    `layer`/`pool` on `device`.

    layer: final (the model's own output), stage1..stage4 (the built-in encoder's stages),
    or any sub-module's dotted name (torch) / tensor name (ONNX), pooled over space.
    """
    import torch

    # heavy: loads torch
    from radlens_cli.encoders.convnextv2 import LAYERS, POOLS

    if pool not in POOLS:
        raise ParameterError(f"{{pool}} must be one of {', '.join(POOLS)} (got {pool!r})", "pool")
    if not layer or not str(layer).strip():
        raise ParameterError("{layer}: give final, stage1..stage4 or a layer name", "layer")
    device = device if device is not None else torch.device("cpu")
    if is_onnx(spec):
        if weights:
            raise UsageError(f"{spec}: an ONNX file holds its own weights; no separate weights file")
        return OnnxEmbedder(spec, layer, pool, device, modalities=modalities)
    model, info = load_encoder(spec, arch=arch, map_location="cpu", trust=trust, weights=weights)
    if modalities is not None and info.in_chans is not None and int(info.in_chans) != len(modalities):
        raise ParameterError(f"{spec}: the encoder takes {info.in_chans} input channel(s) but "
                             f"{{modalities}} gives {len(modalities)} ({','.join(modalities)})", "modalities",
                             exit_code=EXIT_DATA)
    module, torchscript = None, False
    builtin = layer == "final" or (layer in LAYERS and hasattr(model, "forward_features"))
    if not builtin:
        if info.source == "torchscript":
            if weights:
                raise ParameterError(f"{{layer}} {layer} of a TorchScript model: give the weights inside the file "
                                     f"(no {{weights}})", "layer", "weights")
            torchscript = True  # its calls are found in its graph (encoders/layers.py), it takes no hooks
            named = dict(model.named_modules())
            name = layer if layer in named else parse_layer(layer)[0]
            if not name or name not in named:
                raise unknown_layer(name, [n for n in named if n], "sub-module of the TorchScript model")
        else:
            named = dict(model.named_modules())
            module = named_module(model, layer if layer in named else parse_layer(layer)[0])
    return Embedder(model.to(device).eval(), info, spec, layer, pool, device, module=module, torchscript=torchscript)


def list_layers(spec: str, arch: str | None = None, weights: str | None = None, crop=None,
                layout: str | None = None, channels: int | None = None, trust: bool = False) -> dict:
    """The layers --layer takes, with their output shapes for one input of `crop` (x, y, z)
    voxels in `layout`: {input_shape, rows: [{layer, kind, shape, dim, calls}]}. A module that
    runs k > 1 times per forward pass gets k rows NAME#1..NAME#k (the names --layer takes);
    calls is k (1 for a layer that runs once, 0 for a module the forward pass never runs,
    None where unknown: a TorchScript call inside a loop or branch; ONNX tensors: 1). shape
    is None where it cannot be known (a module not run, an ONNX op shape inference cannot
    follow, a TorchScript call inside a loop or branch)."""
    # heavy: loads torch
    from radlens_cli.encoders.preprocess import DEFAULT_LAYOUT, LAYOUTS, crop_from_record

    box = None if crop is None else tuple(int(c) for c in crop)
    if layout is not None and layout not in LAYOUTS:
        raise ParameterError(f"{{layout}} must be one of {', '.join(LAYOUTS)}, got {layout!r}", "layout")

    def spatial(rec: dict) -> tuple:
        x, y, z = box or crop_from_record(rec or {})
        lay = layout or (rec or {}).get("layout", DEFAULT_LAYOUT)
        return (z, y, x) if lay == "zyx" else (x, y, z)

    if is_onnx(spec):
        onnx, model, inp = read_graph(spec)
        dims = _dims(inp)
        chans = channels or (dims[1] if len(dims) > 1 and dims[1] else 1)
        shape = ((dims[0] or 1) if dims else 1, chans) + spatial({})
        shapes = infer_shapes(onnx, model, list(shape))
        # every tensor name has one producing node and is computed once per run: calls 1
        rows = [{"layer": "final", "kind": f"output {model.graph.output[0].name}",
                 "shape": shapes.get(model.graph.output[0].name), "calls": 1}]
        for node in model.graph.node:
            for out in node.output:
                if out:
                    rows.append({"layer": out, "kind": node.op_type, "shape": shapes.get(out), "calls": 1})
        for r in rows:
            r["shape"] = None if not r["shape"] or any(d is None for d in r["shape"]) else tuple(r["shape"])
        return {"input_shape": shape, "rows": _with_dims(rows)}

    import torch

    model, info = load_encoder(spec, arch=arch, trust=trust, weights=weights)
    rec = info.preprocessing or {}
    chans = channels or info.in_chans or len(rec.get("modalities") or []) or 1
    shape = (1, int(chans)) + spatial(rec)
    x = torch.zeros(shape)
    try:
        if info.source == "torchscript":  # no hooks: the calls are found in its graph below
            with torch.no_grad():
                out = model(x)
            seen = {}
        else:
            seen, out = call_shapes(model, x)
        with torch.no_grad():
            feats = model.forward_features(x) if hasattr(model, "forward_features") else None
    except Exception as e:  # noqa: BLE001 - the user's model on our input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ParameterError(f"{spec}: forward pass on an input of shape {shape} failed: {first}; "
                             f"set {{crop}} (x,y,z), {{layout}} and {{channels}} to what the model takes",
                             "crop", "layout", "channels", exit_code=EXIT_DATA) from None
    unknown = False
    if info.source == "torchscript":
        try:
            seen = torchscript_call_shapes(model, x)
        except Exception:  # noqa: BLE001 - private TorchScript API: list the names without shapes
            unknown = True
    out = out[0] if isinstance(out, (tuple, list)) else out
    rows = [{"layer": "final", "kind": "model output", "shape": tuple(out.shape), "calls": 1}]
    if feats is not None:
        if isinstance(feats, tuple) and len(feats) == 2 and isinstance(feats[1], (list, tuple)):
            feats = feats[1]
        rows += [{"layer": f"stage{k + 1}", "kind": "built-in stage", "shape": tuple(f.shape), "calls": 1}
                 for k, f in enumerate(feats[:4])]
    for name, mod in model.named_modules():
        if not name:
            continue
        kind = getattr(mod, "original_name", type(mod).__name__)
        calls = seen.get(name, [])
        if unknown or calls is None:  # a TorchScript model whose calls its graph does not tell
            rows.append({"layer": name, "kind": kind, "shape": None, "calls": None})
        elif len(calls) <= 1:
            rows.append({"layer": name, "kind": kind, "shape": calls[0] if calls else None, "calls": len(calls)})
        else:  # a module run k times: one row per call, each named as --layer takes it
            rows += [{"layer": f"{name}#{k}", "kind": kind, "shape": s, "calls": len(calls)}
                     for k, s in enumerate(calls, 1)]
    return {"input_shape": shape, "rows": _with_dims(rows)}


def _with_dims(rows: list[dict]) -> list[dict]:
    for r in rows:
        s = r["shape"]
        r["dim"] = None if s is None or len(s) < 2 else int(s[1])
    return rows
