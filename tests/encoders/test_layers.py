"""Call indices of a module run more than once per forward pass (encoders/layers.py): resolving
NAME / NAME#k / NAME#last, capturing the k-th call (values and gradients), TorchScript calls.
Values are checked against hand-written forward hooks and hand-written forward passes."""

from __future__ import annotations

import pytest
import torch

from radlens_cli.encoders.layers import (CallCapture, call_shapes, capture_call, choose_call, parse_layer,
                                         resolve_layer, resolve_torchscript_layer, run_to_call)
from radlens_cli.errors import ParameterError
from tests.encoders.factories import LoopAct, reused_act, tiny_resnet3d

X = torch.randn(2, 1, 16, 32, 32, generator=torch.Generator().manual_seed(3))
SHAPES = [(1, 4, 16, 32, 32), (1, 8, 8, 16, 16), (1, 16, 4, 8, 8)]


def _hooked_calls(module, model, x):
    """Every output of `module` in one forward pass, by a plain hand-written forward hook."""
    seen = []
    h = module.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    with torch.no_grad():
        model(x)
    h.remove()
    return seen


def test_parse_layer():
    assert parse_layer("layer4.2.relu") == ("layer4.2.relu", None)
    assert parse_layer("layer4.2.relu#3") == ("layer4.2.relu", 3)
    assert parse_layer("act#last") == ("act", "last") and parse_layer("act#LAST") == ("act", "last")
    for bad in ("act#0", "act#", "act#two", "act#-1"):
        with pytest.raises(ParameterError, match="1-based"):
            parse_layer(bad)


def test_a_reused_module_needs_a_call_and_lists_its_calls():
    net = reused_act()
    with pytest.raises(ParameterError) as e:
        resolve_layer(net, "act", X[:1])
    msg = str(e.value)
    # the library names the parameter (layer), the CLI wrapper the flag
    assert msg.startswith("layer act: the module runs 3 times") and "--layer" not in msg
    assert e.value.flagged().startswith("--layer act")
    for k, s in enumerate(SHAPES, 1):
        assert f"act#{k} {'x'.join(map(str, s))}" in msg
    assert "act#last" in msg
    with pytest.raises(ParameterError, match=r"act#4: the module runs 3 time\(s\)"):
        resolve_layer(net, "act#4", X[:1])
    with pytest.raises(ParameterError, match="no such sub-module.*act"):
        resolve_layer(net, "actt#2", X[:1])


def test_choices_and_their_labels():
    net = reused_act()
    c = resolve_layer(net, "act#3", X[:1])
    assert (c.module, c.call, c.calls, c.shapes, c.label) == (net.act, 3, 3, SHAPES, "act#3")
    assert resolve_layer(net, "act#last", X[:1]).label == "act#3"
    assert resolve_layer(net, "act#1", X[:1]).label == "act#1"
    # a module that runs once is recorded as plain NAME, whichever way it was named
    for name in ("conv2", "conv2#1", "conv2#last"):
        c = resolve_layer(net, name, X[:1])
        assert (c.call, c.calls, c.label) == (1, 1, "conv2")
    with pytest.raises(ParameterError, match="conv2#2: the module runs 1 time"):
        resolve_layer(net, "conv2#2", X[:1])


def test_the_kth_call_equals_a_hand_written_hook():
    net = reused_act()
    by_hand = _hooked_calls(net.act, net, X)
    assert [tuple(t.shape[1:]) for t in by_hand] == [s[1:] for s in SHAPES]
    for k in (1, 2, 3):
        c = resolve_layer(net, f"act#{k}", X[:1])
        with torch.no_grad(), capture_call(c.module, c.call, stop=True) as cap:
            net(X)
        assert torch.equal(cap.output, by_hand[k - 1])
        assert cap.count == k  # stop=True ended the pass at the chosen call
    # counting only
    with torch.no_grad(), capture_call(net.act) as cap:
        net(X)
    assert cap.count == 3 and cap.output is None


def test_run_to_call_with_a_kept_hook_and_a_call_that_never_comes():
    net = reused_act()
    cap = CallCapture(call=2, stop=True, name="act")
    h = net.act.register_forward_hook(cap.hook)
    with torch.no_grad():
        a = run_to_call(net, cap, X)
        b = run_to_call(net, cap, X[:1])  # the capture is reset between passes
    assert torch.equal(a, _hooked_calls(net.act, net, X)[1])
    assert torch.allclose(b, a[:1], atol=1e-6)  # batch 1 vs 2: other conv kernels
    cap.call = 4
    with pytest.raises(ParameterError, match=r"act#4: that call did not run on an input of shape 2x1x16x32x32 "
                                             r"\(the module ran 3 time"):
        run_to_call(net, cap, X)
    h.remove()


def test_gradients_of_the_kth_call_match_a_hand_written_forward():
    net = reused_act()
    c = resolve_layer(net, "act#2", X[:1])
    with capture_call(c.module, c.call) as cap:
        y = net(X)
    grad = torch.autograd.grad(y.square().sum(), cap.output)[0]
    # by hand: cut the graph at the second activation and run the rest of the network from it
    with torch.no_grad():
        a2 = net.act(net.conv2(net.act(net.conv1(X))))
    a2 = a2.clone().requires_grad_()
    expected = torch.autograd.grad(net.act(net.conv3(a2)).square().sum(), a2)[0]
    assert torch.allclose(grad, expected, atol=1e-6) and grad.abs().sum() > 0


def test_resnet_block_shared_relu_calls():
    net = tiny_resnet3d()
    x = torch.zeros(1, 1, 16, 32, 32)
    shapes, out = call_shapes(net, x)
    assert tuple(out.shape) == (1, 3)
    assert shapes["relu"] == [(1, 8, 8, 16, 16)]  # the stem's relu: once
    # layer2's block: before the stride, after it, after the residual add (4x the channels)
    assert shapes["layer2.0.relu"] == [(1, 8, 8, 16, 16), (1, 8, 4, 8, 8), (1, 32, 4, 8, 8)]
    assert shapes["layer1.0.relu"] == [(1, 4, 8, 16, 16), (1, 4, 8, 16, 16), (1, 16, 8, 16, 16)]
    # the block's last relu is the block's output: what the next stage's input is
    c = resolve_layer(net, "layer1.0.relu#last", x)
    with torch.no_grad(), capture_call(c.module, c.call, stop=True) as cap:
        net(X)
    with torch.no_grad():
        block_out = net.layer1(net.relu(net.bn1(net.conv1(X))))
    assert c.label == "layer1.0.relu#3" and torch.equal(cap.output, block_out)


@pytest.mark.parametrize("how", ["trace", "script"])
def test_torchscript_calls(tmp_path, how):
    net = reused_act()
    ts = torch.jit.trace(net, X[:1]) if how == "trace" else torch.jit.script(net)
    ts.save(str(tmp_path / "m.ts"))
    load = lambda: torch.jit.load(str(tmp_path / "m.ts"))  # noqa: E731 - each resolution marks its own copy
    with pytest.raises(ParameterError) as e:
        resolve_torchscript_layer(load(), "act", X[:1], spec="m.ts")
    assert str(e.value).startswith("m.ts: layer act: the module runs 3 times")
    assert all(f"act#{k} {'x'.join(map(str, s))}" in str(e.value) for k, s in enumerate(SHAPES, 1))
    by_hand = _hooked_calls(net.act, net, X)
    for k in (1, 2, 3):
        c = resolve_torchscript_layer(load(), f"act#{k}", X[:1])
        assert (c.call, c.calls, c.label) == (k, 3, f"act#{k}")
        with torch.no_grad():
            assert torch.allclose(c.function()(X), by_hand[k - 1], atol=1e-6)
    c = resolve_torchscript_layer(load(), "act#last", None)
    assert c.label == "act#3" and c.shapes == [None] * 3
    with torch.no_grad():
        layer, out = c.function(with_output=True)(X)
    assert torch.allclose(layer, by_hand[2], atol=1e-6) and torch.allclose(out, net(X), atol=1e-6)
    c = resolve_torchscript_layer(load(), "conv2", X[:1])
    assert (c.label, c.shapes) == ("conv2", [SHAPES[1]])
    with pytest.raises(ParameterError, match="no such sub-module of the TorchScript model"):
        resolve_torchscript_layer(load(), "actt", X[:1])


def test_torchscript_calls_inside_a_loop_are_refused(tmp_path):
    torch.jit.script(LoopAct()).save(str(tmp_path / "loop.ts"))
    with pytest.raises(ParameterError, match="inside a loop or branch"):
        resolve_torchscript_layer(torch.jit.load(str(tmp_path / "loop.ts")), "act#1", X[:1, :, :4, :4, :4])


def test_choose_call_for_a_module_not_run():
    with pytest.raises(ParameterError, match="not run by the model's forward pass on an input of shape 1x1x4"):
        choose_call("head", None, [], (1, 1, 4))
