"""Which call of a layer: `NAME`, `NAME#k` or `NAME#last` for a module a forward pass runs more than once.

A module can run several times in one forward pass: torchvision's ResNet bottleneck calls
its one `self.relu` three times (after conv1, after conv2, after the residual add), MONAI
blocks and many models share one activation. A forward hook fires on every call, so a
layer named by its module alone is ambiguous there. Here a layer is named `NAME` (a
module that runs once), `NAME#k` (its k-th call, 1-based) or `NAME#last`; naming a module
that runs more than once without a call is an error listing its calls and their shapes.
The recorded label (`LayerChoice.label`) is plain `NAME` for a module that runs once, so
files written before call indices existed read the same.

Torch modules: `resolve_layer` counts the calls on an example input, `capture_call` takes
the chosen call's output with a forward hook (with or without gradients). TorchScript
models take no hooks: `torchscript_calls` marks every call in the inlined forward graph
instead (a traced model's reused module has one method per call: forward, forward1, ...).
ONNX graphs need none of this: each tensor name is produced by exactly one node.

`pool_features` pools a chosen layer's output over space for every kind of encoder (the
one home of embed's `pool`; the built-in encoder's final/stage outputs use it too).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, RadlensError, UsageError

LAST = "last"
_CALL = re.compile(r"^(?P<name>.+)#(?P<call>[^#]*)$")


def pool_features(t, pool: str):
    """(B, d) from a layer's output: (B, d) as it is, (B, C, *spatial) pooled over space."""
    if isinstance(t, (tuple, list)):
        t = next((v for v in t if hasattr(v, "ndim")), None)
        if t is None:
            raise RadlensError("the layer returned no tensor")
    if t.ndim < 2:
        raise RadlensError(f"the layer's output has shape {tuple(t.shape)}; need (batch, channels, ...)")
    if t.ndim == 2:
        return t
    flat = t.reshape(t.shape[0], t.shape[1], -1)
    if isinstance(flat, np.ndarray):
        return flat.mean(-1) if pool == "mean" else flat.max(-1)
    return flat.mean(-1) if pool == "mean" else flat.amax(-1)


def unknown_layer(layer: str, names: list[str], what: str) -> UsageError:
    """A ParameterError for a layer name not among `names`, showing the close ones."""
    close = difflib.get_close_matches(layer, names, n=6, cutoff=0.5)
    shown = close or names[:12]
    more = "" if close or len(names) <= 12 else f" (+{len(names) - 12} more)"
    return ParameterError(f"{{layer}} {layer}: no such {what}; {'close' if close else 'candidates'}: "
                          f"{', '.join(shown)}{more}; `radlens layers ENCODER` lists them with shapes", "layer")


def parse_layer(layer: str) -> tuple[str, int | str | None]:
    """('NAME', k) for 'NAME#k' (1-based), ('NAME', 'last') for 'NAME#last', ('NAME', None) for 'NAME'."""
    m = _CALL.match(str(layer))
    if not m:
        return str(layer), None
    name, call = m["name"], m["call"].strip().lower()
    if call == LAST:
        return name, LAST
    if not call.isdigit() or int(call) < 1:
        raise ParameterError(f"{{layer}} {layer}: a call index is #k with k = 1, 2, ... (1-based) or #last",
                             "layer")
    return name, int(call)


def layer_label(name: str, call: int, calls: int) -> str:
    """How a chosen call is recorded: NAME for a module that runs once, else NAME#k."""
    return name if calls <= 1 else f"{name}#{call}"


def shape_text(shape) -> str:
    """'1x8x4x4x4' for a shape, '?' when unknown."""
    return "?" if shape is None else "x".join(map(str, shape))


def choose_call(name: str, call: int | str | None, shapes: list, input_shape=None, spec: str = "") -> int:
    """The 1-based call of module `name` that `call` (from parse_layer) picks among the calls
    one forward pass made, with their output `shapes` (one entry per call, None where unknown).

    Raises ParameterError naming `layer` when the module did not run, when it ran more than
    once and no call was given (listing the calls), or when the call is past the last one;
    `spec` (the model) starts the message when given.
    """
    n = len(shapes)
    where = f"{spec}: " if spec else ""
    on = f" on an input of shape {shape_text(input_shape)}" if input_shape is not None else ""
    if n == 0:
        raise ParameterError(f"{where}{{layer}} {name}: the module is not run by the model's forward pass{on}", "layer",
                             exit_code=EXIT_DATA)
    listing = ", ".join(f"{name}#{k} {shape_text(s)}" for k, s in enumerate(shapes, 1))
    if call is None:
        if n == 1:
            return 1
        raise ParameterError(f"{where}{{layer}} {name}: the module runs {n} times in one forward pass{on} ({listing}); "
                             f"choose a call as {name}#k (k = 1..{n}) or {name}#last", "layer")
    if call == LAST:
        return n
    if call > n:
        raise ParameterError(f"{where}{{layer}} {name}#{call}: the module runs {n} time(s) in one forward pass{on}"
                             + (f" ({listing})" if n > 1 else ""), "layer")
    return int(call)


def _first_tensor(output):
    """A module's output tensor: the output itself, or the first tensor of a tuple/list."""
    if isinstance(output, (tuple, list)):
        return next((v for v in output if hasattr(v, "shape")), None)
    return output if hasattr(output, "shape") else None


def _shape(output):
    t = _first_tensor(output)
    return None if t is None else tuple(int(d) for d in t.shape)


class _Captured(Exception):
    """Raised by a capture's hook once it holds its call: the rest of the forward pass is not needed."""


@dataclass
class CallCapture:
    """What a `capture_call` hook saw in the forward passes run inside its `with` block.

    output: the chosen call's output as the module returned it (the tensor itself, part of
    the autograd graph when gradients are on; None until that call ran); count: how many
    calls ran in the last forward pass; shapes: their output shapes; name: the module's
    name, for messages.
    """

    call: int | None = None
    stop: bool = False
    name: str = ""
    output: object = None
    count: int = 0
    shapes: list = field(default_factory=list)

    def reset(self) -> None:
        """Forget the previous forward pass (call before each one when reusing a capture)."""
        self.output, self.count, self.shapes = None, 0, []

    def hook(self, module, inputs, output):
        self.count += 1
        self.shapes.append(_shape(output))
        if self.call is not None and self.count == self.call:
            self.output = output
            if self.stop:
                raise _Captured()


class capture_call:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Context manager: hook `module` and keep the output of its `call`-th call (1-based).

        choice = resolve_layer(model, "layer4.2.relu#3", x[:1])
        with capture_call(choice.module, choice.call) as cap:
            y = model(x)                      # gradients on: cap.output is in the graph
        grads = torch.autograd.grad(y[:, c].sum(), cap.output)[0]   # e.g. Grad-CAM

    call None only counts the calls (cap.count, cap.shapes). stop=True ends the forward pass
    as soon as the call ran (the with block swallows the stop; the model returns nothing), for
    values only: it saves the rest of the pass and guarantees that no later in-place operation
    changes the captured tensor. Without stop, a model that later modifies that tensor in place
    changes what cap.output holds (as with any forward hook). The hook is removed on exit.
    """

    def __init__(self, module, call: int | None = None, stop: bool = False):
        self.module, self.capture = module, CallCapture(call=call, stop=stop)
        self._handle = None

    def __enter__(self) -> CallCapture:
        self._handle = self.module.register_forward_hook(self.capture.hook)
        return self.capture

    def __exit__(self, kind, value, tb) -> bool:
        self._handle.remove()
        return kind is _Captured


def run_to_call(model, capture: CallCapture, x):
    """Run model(x) with a capture's hook already registered, stopping at its call when it
    stops; returns the call's output. Raises ParameterError when the pass made fewer calls."""
    capture.reset()
    try:
        model(x)
    except _Captured:
        pass
    if capture.output is None:
        raise ParameterError(f"{{layer}} {capture.name}#{capture.call}: that call did not run on an input of shape "
                             f"{shape_text(tuple(x.shape))} (the module ran {capture.count} time(s))", "layer",
                             exit_code=EXIT_DATA)
    return capture.output


def named_module(model, name: str, what: str = "sub-module of the model"):
    """model's sub-module `name` (dotted), or a ParameterError naming `layer` with close names."""
    named = dict(model.named_modules())
    if not name or name not in named:
        raise unknown_layer(name, [n for n in named if n], what)
    return named[name]


@dataclass
class LayerChoice:
    """A resolved layer: `module` and its 1-based `call` among the `calls` it makes in one
    forward pass (with their output `shapes`); `label` is what outputs record. For a
    TorchScript model, `torchscript` holds the marked graph and `mark` the call's mark
    (see `function`)."""

    name: str
    module: object
    call: int
    calls: int
    shapes: list
    torchscript: TorchScriptCalls | None = None
    mark: int | None = None

    @property
    def label(self) -> str:
        return layer_label(self.name, self.call, self.calls)

    def function(self, with_output: bool = False):
        """TorchScript only: a callable x -> the call's output (with_output: the tuple (the
        call's output, the model's output), from one run)."""
        if self.torchscript is None:
            raise TypeError("function() is for TorchScript models; use capture_call with a torch module")
        fn = self.torchscript.function([self.mark], with_output=with_output)
        return fn if with_output else (lambda x: fn(x)[0])


def resolve_layer(model, layer: str, example, spec: str = "") -> LayerChoice:
    """Resolve `layer` (NAME, NAME#k or NAME#last: a dotted sub-module name of the torch
    `model`) by running model(example) once without gradients, counting the module's calls.

    example: one input the model takes (e.g. zeros of one case's shape). Raises
    ParameterError (naming `layer`) for an unknown name, a module the pass does not run, a
    module that runs more than once without a call (the message lists the calls and their
    shapes), or a call past the last; `spec` (the model) starts the messages when given.
    Capture the chosen call with capture_call(choice.module, choice.call).
    """
    import torch

    named = dict(model.named_modules())
    name, call = (layer, None) if layer in named and layer else parse_layer(layer)
    module = named_module(model, name)
    with torch.no_grad(), capture_call(module) as cap:
        model(example)
    k = choose_call(name, call, cap.shapes, tuple(example.shape), spec)
    return LayerChoice(name, module, k, cap.count, list(cap.shapes))


def call_shapes(model, example, names=None) -> tuple[dict[str, list], object]:
    """{dotted name: [output shape of each call]} of model's sub-modules (all, or `names`)
    on one forward pass of `example` without gradients; a module that did not run is absent,
    a call whose output holds no tensor has shape None. Returns (that dict, the model's output)."""
    import torch

    wanted = None if names is None else set(names)
    captures, stack = {}, []
    for n, m in model.named_modules():
        if n and (wanted is None or n in wanted):
            captures[n] = capture_call(m)
            stack.append(captures[n])
    entered = [c.__enter__() for c in stack]
    try:
        with torch.no_grad():
            out = model(example)
    finally:
        for c in stack:
            c.__exit__(None, None, None)
    return {n: list(cap.shapes) for n, cap in zip(captures, entered) if cap.count}, out


# --- TorchScript -----------------------------------------------------------------------

_MARKER = "radlens-layer-marker"
_FORWARD = re.compile(r"^forward\d*$")


def _module_path(value, root) -> str | None:
    """The dotted path of a module value in an inlined graph: a chain of GetAttr from `root`."""
    parts = []
    while value.node().kind() == "prim::GetAttr":
        parts.append(value.node().s("name"))
        value = value.node().input()
    return ".".join(reversed(parts)) if value.unique() == root.unique() and parts else None


def _marks(block, nested: bool = False):
    for node in block.nodes():
        if node.kind() == "prim::Print" and node.inputsAt(0).toIValue() == _MARKER:
            yield node, nested
        for b in node.blocks():
            yield from _marks(b, True)


@dataclass
class TorchScriptCalls:
    """Every call of a TorchScript model's sub-modules, found in its inlined forward graph.

    calls: {dotted name: [(mark, nested)]}, one per call in the order the forward graph runs
    them; mark: the call's position among the graph's marks (what `function` takes); nested:
    inside a loop or branch, where one graph value stands for any number of calls and cannot
    be taken as an output.
    """

    ts: object
    graph: object
    calls: dict

    def function(self, marks: list[int], with_output: bool = False):
        """A callable x -> tuple of the outputs of the calls with these mark ordinals (the
        positions in `calls`' marks), and the model's own output last when with_output; the
        rest of the graph that does not lead to them is removed."""
        import torch

        graph = self.graph.copy()
        found = list(_marks(graph.block()))
        chosen = [found[i][0].inputsAt(2) for i in marks]
        if with_output:
            chosen += list(graph.outputs())
        for node, _ in found:
            node.destroy()
        while len(list(graph.outputs())):
            graph.eraseOutput(0)
        tup = graph.create("prim::TupleConstruct", chosen, 1)
        tup.insertBefore(graph.return_node())
        tup.output().setType(torch._C.TupleType([v.type() for v in chosen]))
        graph.registerOutput(tup.output())
        torch._C._jit_pass_dce(graph)
        fn = torch._C._create_function_from_graph("radlens_layer", graph)
        return lambda x: fn(self.ts._c, x)

    def shapes(self, example) -> dict[str, list]:
        """{name: [shape of each call]} by running the graph once on `example` (None for a
        nested call, whose shape is not one value)."""
        import torch

        flat = [mark for cs in self.calls.values() for mark, nested in cs if not nested]
        with torch.no_grad():
            got = iter(self.function(flat)(example) if flat else ())
        return {n: [None if nested else _shape(next(got)) for _, nested in cs] for n, cs in self.calls.items()}


def _fresh_copy(ts):
    """A copy of TorchScript module `ts` with its own method graphs (saved and loaded again,
    on the device its weights are on): marking edits method graphs, and a model that has run
    keeps optimised graphs that inlining would use instead of the marked ones."""
    import io

    import torch

    tensors = list(ts.parameters()) + list(ts.buffers())
    buf = io.BytesIO()
    torch.jit.save(ts, buf)
    buf.seek(0)
    return torch.jit.load(buf, map_location=tensors[0].device if tensors else "cpu").eval()


def torchscript_calls(ts, names=None) -> TorchScriptCalls:
    """Find each call of TorchScript module `ts`'s sub-modules (all, or `names`) in its inlined
    forward graph. `ts` itself is left as it is: a copy of it gets marked and runs the calls.

    TorchScript modules take no forward hooks. Each sub-module's forward (and forward1,
    forward2, ...: tracing a module that runs k times gives it k methods) gets a marker on
    its return value that names the module value it ran on; inlining the model's forward
    turns that into a GetAttr chain from the model, i.e. the dotted path of the instance,
    even where instances share one method graph (scripted models).
    """
    import torch

    ts = _fresh_copy(ts)
    wanted = None if names is None else set(names)
    for name, mod in ts.named_modules():
        if not name or (wanted is not None and name not in wanted):
            continue
        for method in mod._c._method_names():
            if not _FORWARD.match(method):
                continue
            g = mod._c._get_method(method).graph
            if any(True for _ in _marks(g.block())):
                continue  # a method graph shared with an instance marked already
            ret = g.return_node()
            marker = g.insertConstant(_MARKER)
            marker.node().moveBefore(ret)
            g.create("prim::Print", [marker, next(iter(g.inputs())), ret.input()], 0).insertBefore(ret)
    graph = ts.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    root = next(iter(graph.inputs()))
    calls: dict[str, list] = {}
    for mark, (node, nested) in enumerate(_marks(graph.block())):
        path = _module_path(node.inputsAt(1), root)
        if path is not None and (wanted is None or path in wanted):
            calls.setdefault(path, []).append((mark, nested))
    return TorchScriptCalls(ts, graph, calls)


def resolve_torchscript_layer(ts, layer: str, example=None, spec: str = "") -> LayerChoice:
    """resolve_layer for a TorchScript module `ts` (see torchscript_calls; `ts` itself is not
    changed, the chosen call runs in a marked copy). example: one input, run once to show each call's
    shape in messages (None: shapes unknown; a failing run raises the model's own error).
    Calls inside a loop or branch of the scripted forward cannot be told apart: a
    ParameterError says so. `spec` names the model in messages.
    """
    named = dict(ts.named_modules())
    name, call = (layer, None) if layer in named and layer else parse_layer(layer)
    if not name or name not in named:
        raise unknown_layer(name, [n for n in named if n], "sub-module of the TorchScript model")
    where = f"{spec}: " if spec else ""
    try:
        found = torchscript_calls(ts, [name])
    except Exception as e:  # noqa: BLE001 - private TorchScript API: say what to do instead
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ParameterError(f"{where}{{layer}} {layer}: cannot take a sub-module's output from the TorchScript model "
                             f"({type(e).__name__}: {first}); export it to ONNX or load it as package.module:factory "
                             f"with {{weights}}", "layer", "weights") from None
    calls = found.calls.get(name, [])
    if any(nested for _, nested in calls):
        raise ParameterError(f"{where}{{layer}} {name} runs inside a loop or branch of the TorchScript forward, "
                             f"where its calls cannot be told apart; export the model to ONNX or load it as "
                             f"package.module:factory with {{weights}}", "layer", "weights")
    shapes = found.shapes(example)[name] if example is not None and calls else [None] * len(calls)
    k = choose_call(name, call, shapes, None if example is None else tuple(example.shape), spec)
    return LayerChoice(name, named[name], k, len(calls), shapes, torchscript=found, mark=calls[k - 1][0])


def torchscript_call_shapes(ts, example) -> dict[str, list | None]:
    """call_shapes for TorchScript module `ts` (see torchscript_calls): {dotted name: [output
    shape of each call]}; None for a module called
    inside a loop or branch of the scripted forward, whose calls the graph cannot count."""
    found = torchscript_calls(ts)
    shapes = found.shapes(example)
    return {n: None if any(nested for _, nested in cs) else shapes[n] for n, cs in found.calls.items()}
