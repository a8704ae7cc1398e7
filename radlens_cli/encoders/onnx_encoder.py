"""ONNX encoders (onnxruntime): any tensor of the graph as the embedding, pooled over space.

`onnx` exposes an intermediate tensor by adding it to the graph's outputs; `onnxruntime`
runs the graph on the CPU, or CUDA when asked for and available. A batch dimension fixed in
the graph is honoured by running fixed-size chunks (the last one zero-padded, its padding
dropped). Both packages come with the optional extra `radlens[onnx]`.
"""

from __future__ import annotations

import os

import numpy as np

from radlens_cli import log
from radlens_cli.encoders.info import EncoderInfo
from radlens_cli.encoders.layers import pool_features, unknown_layer
from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError, UsageError
from radlens_cli.provenance import sha256_file

EXTRA_HINT = "install them with: pip install 'radlens[onnx]'"


def _imports():
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise RadlensError(f"ONNX encoders need the onnx and onnxruntime packages ({e.name} is missing); "
                           f"{EXTRA_HINT}") from None
    return onnx, onnxruntime


def _dims(value_info) -> list:
    """Fixed sizes of a graph value's shape, None where symbolic or unknown."""
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def _shape_text(dims) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def read_graph(path: str):
    """(onnx module, ModelProto, input ValueInfo) of a single-input ONNX model."""
    onnx, _ = _imports()
    if not os.path.isfile(path):
        raise RadlensError(f"ONNX encoder not found: {path}")
    try:
        model = onnx.load(path)
    except Exception as e:  # noqa: BLE001 - protobuf/IO errors
        raise RadlensError(f"cannot read ONNX model {path}: {str(e).strip().splitlines()[0] if str(e).strip() else e}") \
            from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise RadlensError(f"{path}: the ONNX model has {len(inputs)} inputs "
                           f"({', '.join(i.name for i in inputs)}); radlens feeds one image tensor")
    return onnx, model, inputs[0]


def tensor_names(model) -> list[str]:
    """Every tensor a node of the graph produces, in graph order."""
    return [o for n in model.graph.node for o in n.output if o]


def infer_shapes(onnx, model, input_dims: list | None = None) -> dict:
    """{tensor name: dims} by ONNX shape inference, optionally with the input's size fixed."""
    m = model
    if input_dims is not None:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        inits = {i.name for i in m.graph.initializer}
        inp = next(i for i in m.graph.input if i.name not in inits)
        for d, v in zip(inp.type.tensor_type.shape.dim, input_dims):
            if v is not None:
                d.Clear()
                d.dim_value = int(v)
    try:
        inferred = onnx.shape_inference.infer_shapes(m)
    except Exception:  # noqa: BLE001 - models with custom ops: no static shapes
        return {}
    g = inferred.graph
    return {v.name: _dims(v) for v in list(g.value_info) + list(g.output) + list(g.input)}


class OnnxEmbedder:
    """An ONNX graph with a chosen output tensor: (B, C, *spatial) tensor -> (B, d) float64."""

    def __init__(self, path: str, layer: str, pool: str, device, modalities: list | None = None):
        import hashlib

        onnx, ort = _imports()
        onnx_, model, inp = read_graph(path)
        self.spec, self.layer, self.pool, self.device = path, layer, pool, device
        self.input_name, self.input_dims = inp.name, _dims(inp)
        self.input_dtype = onnx.helper.tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type)
        outputs = [o.name for o in model.graph.output]
        edited = False
        if layer == "final":
            self.output_name = outputs[0]
        elif layer in outputs:
            self.output_name = layer
        else:
            names = tensor_names(model)
            base = layer.rsplit("#", 1)[0]
            if layer not in names and base != layer and base in names + outputs:
                raise ParameterError(f"{path}: {{layer}} {layer}: an ONNX tensor is computed once per run (each name "
                                     f"has one producing node), so it takes no call index; give {base}. A torch "
                                     f"module run k times exports as k nodes with k tensor names: `radlens layers` "
                                     f"lists them", "layer")
            if layer not in names:
                raise unknown_layer(layer, names, "tensor in the ONNX graph")
            known = {}
            try:
                inferred = onnx.shape_inference.infer_shapes(model)
                known = {v.name: v for v in inferred.graph.value_info}
            except Exception:  # noqa: BLE001
                pass
            vi = known.get(layer) or onnx.helper.make_tensor_value_info(layer, onnx.TensorProto.FLOAT, None)
            model.graph.output.append(vi)
            self.output_name = layer
            edited = True
        providers = ["CPUExecutionProvider"]
        if getattr(device, "type", "cpu") == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers = ["CUDAExecutionProvider"] + providers
            else:
                log.warn(f"{path}: this onnxruntime has no CUDA provider (install onnxruntime-gpu); "
                         f"running the ONNX model on the CPU")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            # an unedited graph loads from its file (external weights, models over 2 GB)
            source = model.SerializeToString() if edited else path
            self.session = ort.InferenceSession(source, opts, providers=providers)
        except Exception as e:  # noqa: BLE001
            raise RadlensError(f"onnxruntime cannot load {path}: {str(e).strip().splitlines()[0]}") from None
        self.providers = self.session.get_providers()
        self.fingerprint = hashlib.sha256(f"{sha256_file(path)}|{self.output_name}".encode()).hexdigest()
        self.use_amp = False
        self.layer_calls = None  # call indices are for torch modules; a tensor name is one value
        chans = self.input_dims[1] if len(self.input_dims) > 1 else None
        self.info = EncoderInfo(spec=path, source="onnx", arch="onnx", in_chans=chans,
                                onnx_input=self.input_name, onnx_input_shape=_shape_text(self.input_dims),
                                onnx_output=self.output_name, onnx_providers=self.providers)
        if modalities is not None and chans is not None and chans != len(modalities):
            raise ParameterError(f"{path}: the ONNX model takes {chans} input channel(s) but {{modalities}} gives "
                                 f"{len(modalities)} ({','.join(modalities)})", "modalities", exit_code=EXIT_DATA)

    @property
    def source(self) -> str:
        return "onnx"

    @property
    def arch(self) -> str:
        return "onnx"

    def check_config(self, cfg) -> None:
        """A fixed input size in the graph must equal (C, *box in layout order); said before any case is read."""
        want = cfg.tensor_shape()
        dims = self.input_dims
        if dims and len(dims) != len(want) + 1:
            raise UsageError(f"{self.spec}: the ONNX input {self.input_name} is {_shape_text(dims)} "
                             f"({len(dims)}-D); radlens feeds (batch, C, 3 spatial axes)")
        bad = [k for k, (d, w) in enumerate(zip(dims[1:], want)) if d is not None and d != w]
        if bad:
            x, y, z = cfg.crop
            raise ParameterError(f"{self.spec}: the ONNX model's input {self.input_name} is {_shape_text(dims)} but "
                                 f"{{modalities}}/{{crop}} {x},{y},{z}/{{layout}} {cfg.layout} give (batch, "
                                 f"{', '.join(map(str, want))}); set {{crop}} (x,y,z) and {{layout}} to the model's",
                                 "modalities", "crop", "layout")

    def _run(self, a: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: a})[0]

    def __call__(self, x, first_case: str = "") -> np.ndarray:
        a = np.ascontiguousarray(x.detach().cpu().numpy().astype(self.input_dtype, copy=False))
        n = a.shape[0]
        fixed = self.input_dims[0] if self.input_dims else None
        try:
            if fixed is None or fixed == n:
                out = self._run(a)
            else:  # a graph exported with a fixed batch size: run chunks of exactly that size
                parts = []
                for s in range(0, n, fixed):
                    chunk = a[s:s + fixed]
                    k = chunk.shape[0]
                    if k < fixed:
                        chunk = np.concatenate([chunk, np.zeros((fixed - k,) + chunk.shape[1:], chunk.dtype)])
                    parts.append(self._run(chunk)[:k])
                out = np.concatenate(parts, 0)
        except Exception as err:  # noqa: BLE001 - onnxruntime errors
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RadlensError(f"{self.spec}: ONNX run failed on input {a.shape} (case {first_case}...): "
                               f"{first}") from None
        out = np.asarray(out)
        if out.ndim < 2 or out.shape[0] != n:
            raise RadlensError(f"{self.spec}: tensor {self.output_name} has shape {out.shape}; need "
                               f"(batch, channels, ...) with batch {n}")
        return np.asarray(pool_features(out.astype(np.float64), self.pool), dtype=np.float64)
