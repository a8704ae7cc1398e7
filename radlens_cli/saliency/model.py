"""The model a saliency map explains: which network, which output, which layer.

`load_scored` reads a finetune checkpoint (its encoder and head, run as the training ran
them), a `package.module:factory` or TorchScript model with a head, or an ONNX model
(occlusion only). `Scorer` turns the network's output into the one number per case a map
explains: the predicted class's logit (classify; `output_index` picks another class), the
output (regress), the mean foreground logit inside the mask (segment). The class is fixed
on the unperturbed input, so every perturbation (ScoreCAM, occlusion, deletion) asks about
the same class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radlens_cli.encoders.checkpoints import load_encoder
from radlens_cli.encoders.infer import is_onnx, model_fingerprint
from radlens_cli.encoders.layers import call_shapes, resolve_layer, resolve_torchscript_layer
from radlens_cli.encoders.onnx_encoder import OnnxEmbedder
from radlens_cli.encoders.training.finetuned import load_finetuned
from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError

TASK_KINDS = ("classify", "regress", "segment")


@dataclass
class ScoredModel:
    """A network with a head on a device (torch) or an ONNX session (`onnx`)."""

    spec: str
    source: str
    task: str | None            # classify / regress / segment when the checkpoint says; None: from the output
    device: object
    model: object = None        # torch module (None for ONNX)
    onnx: object = None         # OnnxEmbedder at its final output
    preprocessing: dict | None = None
    fingerprint: str = ""
    in_chans: int | None = None
    extra: dict = field(default_factory=dict)
    tapped_layer: str | None = None  # TorchScript: the layer whose output the wrapper's `tap` passes on

    @property
    def is_onnx(self) -> bool:
        return self.onnx is not None


def load_scored(spec: str, device=None, weights: str | None = None, trust: bool = False,
                modalities: list | None = None) -> ScoredModel:
    """The model of `spec`: a finetune checkpoint, factory/TorchScript (with `weights`), or .onnx.

    A TorchScript model takes no hooks: its graph is cut so one call gives the output of
    `layer` and the model's output (`ScriptTapped`); `layer` defaults to its last stage."""
    import torch

    device = device if device is not None else torch.device("cpu")
    if is_onnx(spec):
        emb = OnnxEmbedder(spec, "final", "mean", device, modalities=modalities)
        return ScoredModel(spec, "onnx", None, device, onnx=emb, fingerprint=emb.fingerprint,
                           in_chans=emb.info.in_chans)
    model, info = load_encoder(spec, map_location="cpu", trust=trust, weights=weights)
    task = None
    meta = (info.extra or {}).get("finetune")
    if meta:
        # heavy: the heads module loads torch at import
        from radlens_cli.encoders.heads import TaskModel

        enc, head, meta = load_finetuned(spec)
        task = str(meta["task"])
        model = TaskModel(enc, head, task)
    elif info.source not in ("factory", "torchscript"):
        raise ParameterError(f"{spec}: an encoder without a head ({info.source} checkpoint) has no output to "
                             f"explain; give a `radlens finetune` checkpoint or a model with a head "
                             f"(package.module:factory, TorchScript), or ask only for concept maps "
                             f"({{decoder}})", "encoder", "decoder", exit_code=EXIT_DATA)
    if modalities is not None and info.in_chans is not None and int(info.in_chans) != len(modalities):
        raise ParameterError(f"{spec}: the model takes {info.in_chans} input channel(s) but {{modalities}} "
                             f"gives {len(modalities)}", "modalities", exit_code=EXIT_DATA)
    fingerprint = model_fingerprint(model)
    model = model.to(device).eval()
    return ScoredModel(spec, info.source, task, device, model=model, preprocessing=info.preprocessing,
                       fingerprint=fingerprint, in_chans=info.in_chans, extra={"task": task} if task else {})


def tap_torchscript(sm: ScoredModel, layer: str | None, example) -> str:
    """Wrap a TorchScript model so its `tap` sees `layer`'s output (see ScriptTapped); returns
    the layer's recorded label. TorchScript takes no hooks: the call is marked in its graph
    (encoders.layers.resolve_torchscript_layer)."""
    name = layer or default_layer(sm.model)
    if name is None:
        raise ParameterError(f"{sm.spec}: name the layer of this TorchScript model with {{layer}} (`radlens layers` "
                             f"lists them)", "layer")
    choice = resolve_torchscript_layer(sm.model, name, example, spec=sm.spec)
    sm.model = ScriptTapped(sm.model, choice.function(with_output=True)).to(sm.device).eval()
    sm.tapped_layer = choice.label
    return choice.label


def _script_tapped_class():
    import torch

    class ScriptTapped(torch.nn.Module):
        """A TorchScript model as a module whose `tap` (an identity) sees the layer's output."""

        def __init__(self, script, fn):
            super().__init__()
            self.script = script
            self.tap = torch.nn.Identity()
            self._fn = fn

        def forward(self, x):
            act, out = self._fn(x)[:2]
            self.tap(act)  # the same tensor: gradients of `out` reach it
            return out

    return ScriptTapped


def ScriptTapped(script, fn):  # noqa: N802 - a class built lazily (torch is imported on use)
    return _script_tapped_class()(script, fn)


class Scorer:
    """(B, C, *sp) -> (B,) : the output a map explains, fixed per case by `prepare`."""

    def __init__(self, run, task: str | None = None, output_index: int | None = None, numpy: bool = False):
        self.run, self.task, self.output_index, self.numpy = run, task, output_index, numpy
        self.kind = None
        self.index = None
        self.mask = None
        self.record = None
        self._armed = None

    def prepare(self, x, mask) -> dict:
        """Run x once; fix the kind of output, the class/channel and (segment) the mask.
        Returns {"output_index", "output"} for the table (also kept as `record`)."""
        if self.numpy:
            return self._fix(self._raw(x), x, mask)
        import torch

        with torch.no_grad():
            return self._fix(self._raw(x), x, mask)

    def arm(self, x, mask) -> None:
        """Let the next call fix the output as `prepare(x, mask)` would, from its own forward
        pass when it is given x (a map's first forward pass is the unperturbed input: this
        saves prepare's), else from a separate prepare first. `record` holds the result."""
        self._armed = (x, mask)
        self.record = None

    def _fix(self, out, x, mask) -> dict:
        if isinstance(out, (tuple, list)):
            out = out[0]
        shape = tuple(out.shape)
        spatial = tuple(x.shape[2:])
        if len(shape) == 2 and shape[1] > 1:
            kind = "classify"
        elif len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
            kind = "regress"
        elif len(shape) == len(x.shape) and shape[2:] == spatial:
            kind = "segment"
        else:
            raise RadlensError(f"the model's output has shape {shape}; saliency needs (batch, classes), "
                               f"(batch,) or a (batch, channels, {', '.join(map(str, spatial))}) segmentation")
        if self.task and self.task != kind:
            raise RadlensError(f"a {self.task} checkpoint gave an output of shape {shape}")
        self.kind = kind
        k = self.output_index
        if kind == "classify":
            if k is not None and not 0 <= k < shape[1]:
                raise ParameterError(f"{{output_index}} {k}: the model has {shape[1]} classes (0..{shape[1] - 1})",
                                     "output_index")
            self.index = int(_np(out)[0].argmax()) if k is None else int(k)
        elif kind == "regress":
            if k not in (None, 0):
                raise ParameterError(f"{{output_index}} {k}: a regression model has one output (0)", "output_index")
            self.index = 0
        else:
            if k is not None and not 0 <= k < shape[1]:
                raise ParameterError(f"{{output_index}} {k}: the segmentation has {shape[1]} channel(s)",
                                     "output_index")
            self.index = (0 if shape[1] == 1 else 1) if k is None else int(k)
            m = np.asarray(mask, dtype=np.float64 if self.numpy else np.float32)[None]
            if m.sum() == 0:
                raise RadlensError("the mask is empty inside the box")
            if self.numpy:
                self.mask = m
            else:
                import torch

                self.mask = torch.as_tensor(m, device=x.device)
        value = float(_np(self._select(out)).reshape(-1)[0])
        self.record = {"output_index": self.index, "output": value}
        return self.record

    def _raw(self, x):
        out = self.run(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out

    def _select(self, out):
        if self.kind == "classify":
            return out[:, self.index]
        if self.kind == "regress":
            return out.reshape(out.shape[0])
        ch = out[:, self.index]
        axes = tuple(range(1, ch.ndim))
        return (ch * self.mask).sum(axes) / self.mask.sum()

    def __call__(self, x):
        if self._armed is not None:
            x0, mask = self._armed
            self._armed = None
            if x is x0 or (tuple(x.shape) == tuple(x0.shape) and _equal(x, x0)):
                out = self._raw(x)
                self._fix(out, x, mask)
                return self._select(out)
            self.prepare(x0, mask)
        return self._select(self._raw(x))


def _equal(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    import torch

    return bool(torch.equal(a.detach(), b.detach()))


def _np(t) -> np.ndarray:
    return t if isinstance(t, np.ndarray) else t.detach().double().cpu().numpy()


# ------------------------------------------------------------------------------- layers

def default_layer(model) -> str | None:
    """The last stage: `stages.<last>` of a ConvNeXt (also as a TaskModel's encoder); None
    for other models (LayerSite then probes for the last feature map)."""
    import torch

    for prefix, m in (("encoder.", getattr(model, "encoder", None)), ("", model)):
        stages = getattr(m, "stages", None)
        if isinstance(stages, (torch.nn.ModuleList, torch.jit.ScriptModule)) and len(list(stages.children())):
            return f"{prefix}stages.{len(list(stages.children())) - 1}"
    return None


class LayerSite:
    """The module Captum hooks for `layer` (`NAME`, `NAME#k`, `NAME#last`; None: the default).

    Resolved by encoders.layers (call counting, the errors listing a module's calls). A
    module that runs once is hooked as it is; for the k-th call of a module that runs more
    often, that call's output passes through an identity module (`module`), which is what
    Captum hooks, so nothing else changes. `reset()` before each forward pass.
    """

    def __init__(self, model, layer: str | None, probe_input):
        import torch

        self.model = model
        if layer is None:
            layer = default_layer(model)
        if layer is None:
            shapes, _ = call_shapes(model, probe_input)
            nd = probe_input.ndim
            found = [n for n, ss in shapes.items() if ss and ss[-1] is not None and len(ss[-1]) == nd
                     and int(np.prod(ss[-1][2:])) > 1]
            if not found:
                raise ParameterError(f"no sub-module of the model outputs a ({nd}-D) feature map; name one "
                                     f"with {{layer}}", "layer", exit_code=EXIT_DATA)
            layer = found[-1]  # in the order calls finish: the last feature map
            if len(shapes[layer]) > 1:
                layer = f"{layer}#last"
        choice = resolve_layer(model, layer, probe_input)
        self.name, self.shape = choice.label, choice.shapes[choice.call - 1]
        self._handle, self._count = None, 0
        if choice.calls == 1:
            self.module = choice.module
        else:
            self.module = torch.nn.Identity()
            k = choice.call

            def hook(mod, i, o):
                self._count += 1
                return self.module(o) if self._count == k else None

            self._handle = choice.module.register_forward_hook(hook)

    def reset(self) -> None:
        self._count = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.remove()
