"""Bring your own encoder: any layer of a torch model (hook), Lightning and safetensors
weights for a factory, ONNX models (intermediate tensors, fixed batch and input sizes),
and `radlens layers`. Values are checked against the torch model run directly."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest
import torch

from radlens_cli.io.tables import read_table
from tests.encoders.factories import tiny_segnet

ONE = ["--modalities", "t2", "--mask", "gland"]
BOX = ["--crop", "32,32,16", "--spacing", "1,1,2"]  # x, y, z
FACTORY = "tests.encoders.factories:tiny_segnet"


def _reference(cohort, module, pool="mean", layout="zyx"):
    """The pooled output of `module` on radlens's own preprocessed volumes, computed directly."""
    from radlens_cli.encoders.preprocess import CaseDataset, PreprocessConfig
    from radlens_cli.io.manifest import MaskSpec, read_manifest

    ds = CaseDataset(read_manifest(cohort), PreprocessConfig(["t2"], MaskSpec("gland"), spacing=(1, 1, 2),
                                                             crop=(32, 32, 16), layout=layout))
    x = torch.stack([ds[i]["volume"] for i in range(len(ds))])
    with torch.no_grad():
        out = module(x).flatten(2)
    return (out.mean(-1) if pool == "mean" else out.amax(-1)).double().numpy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The 'trained' network (seed 7) and its weights as Lightning and safetensors files."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("byo")
    net = tiny_segnet(7)
    lit = root / "model.ckpt"
    torch.save({"epoch": 9, "global_step": 90, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                "hyper_parameters": {"lr": 1e-3}, "optimizer_states": [], "lr_schedulers": []}, lit)
    st = root / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    return {"net": net, "lightning": lit, "safetensors": st, "root": root}


def test_any_layer_of_a_factory_with_lightning_or_safetensors_weights(cli, cohort, trained, tmp_path):
    net = trained["net"]
    ref = _reference(cohort, net.encoder, "mean")
    for name, w in (("lit", trained["lightning"]), ("st", trained["safetensors"])):
        out = tmp_path / f"{name}.h5"
        r = cli("embed", cohort, *ONE, "--encoder", FACTORY, "--weights", w, "--layer", "encoder.act2",
                *BOX, "-o", out)
        assert r.exit_code == 0, r
        t = read_table(str(out))
        assert t.values.shape == (4, 8)
        assert np.allclose(t.values, ref, atol=1e-5)
        with h5py.File(out) as f:
            params, inputs = json.loads(f.attrs["params"]), json.loads(f.attrs["inputs"])
        assert params["layer"] == "encoder.act2" and params["weights"] == str(w) and "weights" in inputs
    assert params["weights_prefix"] == ""  # safetensors names as saved; Lightning's had `model.`
    # max pooling, and the bottleneck; without --weights the factory's own (seed 0) weights differ
    r = cli("embed", cohort, *ONE, "--encoder", FACTORY, "--weights", trained["lightning"], "--layer", "bottleneck",
            "--pool", "max", *BOX, "-o", tmp_path / "b.h5")
    assert r.exit_code == 0, r
    ref_b = _reference(cohort, torch.nn.Sequential(net.encoder, net.bottleneck), "max")
    assert np.allclose(read_table(str(tmp_path / "b.h5")).values, ref_b, atol=1e-5)
    r = cli("embed", cohort, *ONE, "--encoder", FACTORY, "--layer", "encoder.act2", *BOX, "-o", tmp_path / "s0.h5")
    assert not np.allclose(read_table(str(tmp_path / "s0.h5")).values, ref, atol=1e-3)
    # an unknown layer names the close candidates
    r = cli("embed", cohort, *ONE, "--encoder", FACTORY, "--layer", "encoder.act3", *BOX, "-o", tmp_path / "x.h5")
    assert r.exit_code == 2 and "encoder.act2" in r.stderr and "radlens layers" in r.stderr, r
    # weights of another network: the missing weight is named
    torch.save({"state_dict": {"model.other.weight": torch.zeros(1)}}, tmp_path / "other.ckpt")
    r = cli("embed", cohort, *ONE, "--encoder", FACTORY, "--weights", tmp_path / "other.ckpt", *BOX,
            "-o", tmp_path / "y.h5")
    assert r.exit_code == 1 and "encoder.conv1.weight" in r.stderr, r


def test_built_in_encoder_dotted_layer_equals_its_stage(cli, cohort, atto3, tmp_path):
    MODS = ["--modalities", "t2,dwi,adc", "--mask", "gland"]
    for layer in ("stage3", "stages.2"):
        r = cli("embed", cohort, *MODS, "--encoder", atto3, "--layer", layer, *BOX, "-o", tmp_path / f"{layer}.h5")
        assert r.exit_code == 0, r
    a, b = read_table(str(tmp_path / "stage3.h5")).values, read_table(str(tmp_path / "stages.2.h5")).values
    assert a.shape == (4, 160) and np.allclose(a, b, atol=1e-6)


def _export(net, path, batch=None, spatial=(16, 32, 32)):
    """torch.onnx.export of `net`; batch None: a dynamic batch axis, else that fixed size."""
    x = torch.zeros((batch or 2, 1) + tuple(spatial))
    dyn = None if batch else {"image": {0: "batch"}, "logits": {0: "batch"}}
    torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["image"], output_names=["logits"],
                      dynamic_axes=dyn)
    return path


def _onnx_tensor(path, contains):
    import onnx

    return next(o for n in onnx.load(str(path)).graph.node for o in n.output if contains in o)


def test_onnx_intermediate_tensor_fixed_batch_and_layout(cli, cohort, trained, tmp_path):
    net = trained["net"]
    dyn = _export(net, tmp_path / "dyn.onnx")
    act2 = _onnx_tensor(dyn, "encoder/act2")
    ref = _reference(cohort, net.encoder, "mean")
    r = cli("embed", cohort, *ONE, "--encoder", dyn, "--layer", act2, *BOX, "--batch-size", "3", "-o", tmp_path / "a.h5")
    assert r.exit_code == 0, r
    assert np.allclose(read_table(str(tmp_path / "a.h5")).values, ref, atol=1e-4)
    with h5py.File(tmp_path / "a.h5") as f:
        params = json.loads(f.attrs["params"])
    assert params["encoder_source"] == "onnx" and params["onnx_output"] == act2
    assert params["onnx_providers"] == ["CPUExecutionProvider"]
    # the model's own output (logits), pooled; fixed batch 1 run with --batch-size 3 in chunks
    fixed = _export(net, tmp_path / "fixed.onnx", batch=1)
    r = cli("embed", cohort, *ONE, "--encoder", fixed, *BOX, "--batch-size", "3", "--pool", "max",
            "-o", tmp_path / "f.h5")
    assert r.exit_code == 0, r
    assert np.allclose(read_table(str(tmp_path / "f.h5")).values, _reference(cohort, net, "max"), atol=1e-4)
    # (C, x, y, z) models: export for that layout and give --layout xyz
    xyz = _export(net, tmp_path / "xyz.onnx", spatial=(32, 32, 16))
    r = cli("embed", cohort, *ONE, "--encoder", xyz, "--layer", _onnx_tensor(xyz, "encoder/act2"), *BOX,
            "--layout", "xyz", "-o", tmp_path / "x.h5")
    assert r.exit_code == 0, r
    assert np.allclose(read_table(str(tmp_path / "x.h5")).values, _reference(cohort, net.encoder, layout="xyz"),
                       atol=1e-4)
    # a box or layout the graph's fixed input size disagrees with: an error before any case is read
    bad = tmp_path / "missing.csv"
    bad.write_text("case_id,t2,gland\nc0,/nonexistent/t2.nii.gz,/nonexistent/m.nii.gz\n")
    r = cli("embed", bad, *ONE, "--encoder", xyz, *BOX, "-o", tmp_path / "no.h5")
    assert r.exit_code == 2 and "(?, 1, 32, 32, 16)" in r.stderr and "--layout zyx" in r.stderr, r
    r = cli("embed", bad, *ONE, "--encoder", xyz, *BOX, "--crop", "32,32,8", "--layout", "xyz", "-o", tmp_path / "no.h5")
    assert r.exit_code == 2 and "--crop 32,32,8" in r.stderr, r
    # an unknown tensor name lists close candidates
    r = cli("embed", cohort, *ONE, "--encoder", dyn, "--layer", "/encoder/act9/Relu_output_0", *BOX, "-o", tmp_path / "u.h5")
    assert r.exit_code == 2 and act2 in r.stderr, r


def test_onnx_without_the_extra_names_it(cli, cohort, tmp_path, monkeypatch):
    path = _export(tiny_segnet(1), tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    r = cli("embed", cohort, *ONE, "--encoder", path, *BOX, "-o", tmp_path / "o.h5")
    assert r.exit_code == 1 and "radlens[onnx]" in r.stderr and "onnxruntime" in r.stderr, r


def test_layers_lists_candidates_with_shapes(cli, atto3, trained, tmp_path):
    r = cli("layers", FACTORY, "--weights", trained["lightning"], "--crop", "32,32,16", "--json")
    assert r.exit_code == 0, r
    rows = {x["layer"]: x for x in json.loads(r.stdout)["layers"]}
    assert rows["final"]["shape"] == [1, 2, 16, 32, 32] and rows["encoder.act2"]["shape"] == [1, 8, 8, 16, 16]
    assert rows["encoder.act2"]["dim"] == 8 and rows["encoder.down"]["kind"] == "Conv3d"
    r = cli("layers", atto3, "--crop", "32,32,32")
    assert r.exit_code == 0, r
    lines = dict(line.split("\t")[0:4:3] for line in r.stdout.strip().splitlines()[1:])
    assert lines["final"] == "320" and lines["stage2"] == "80" and lines["stages.1"] == "80"
    path = _export(trained["net"], tmp_path / "m.onnx")
    r = cli("layers", path, "--crop", "32,32,16", "--json")
    assert r.exit_code == 0, r
    rows = {x["layer"]: x for x in json.loads(r.stdout)["layers"]}
    act2 = _onnx_tensor(path, "encoder/act2")
    assert rows[act2]["shape"] == [1, 8, 8, 16, 16] and rows[act2]["kind"] == "Relu"
    assert rows["final"]["shape"] == [1, 2, 16, 32, 32]


def test_torchscript_sub_module_output(cli, cohort, trained, tmp_path):
    net = trained["net"]
    ts = tmp_path / "net.ts"
    torch.jit.trace(net, torch.zeros(1, 1, 16, 32, 32)).save(str(ts))
    r = cli("embed", cohort, *ONE, "--encoder", ts, "--layer", "encoder.act2", *BOX, "-o", tmp_path / "t.h5")
    assert r.exit_code == 0, r
    assert np.allclose(read_table(str(tmp_path / "t.h5")).values, _reference(cohort, net.encoder), atol=1e-5)
    r = cli("embed", cohort, *ONE, "--encoder", ts, "--layer", "encoder.act", *BOX, "-o", tmp_path / "u.h5")
    assert r.exit_code == 2 and "encoder.act2" in r.stderr, r
    # shapes come from the marked graph, run once (TorchScript takes no hooks)
    r = cli("layers", ts, "--crop", "32,32,16")
    assert r.exit_code == 0 and "\nencoder.act2\tReLU\t1x8x8x16x16\t8\t1\n" in r.stdout, r


REUSED = "tests.encoders.factories:reused_act"  # one GELU `act` run three times, three shapes
CALL_SHAPES = ["1x4x16x32x32", "1x8x8x16x16", "1x16x4x8x8"]


def _hooked_reference(cohort, net, module, call):
    """The pooled output of `module`'s `call`-th call (1-based) in net's forward pass on
    radlens's preprocessed volumes, taken by a hand-written forward hook."""
    seen = []
    h = module.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    _reference(cohort, net)
    h.remove()
    return seen[call - 1].flatten(2).mean(-1).double().numpy()


def _params(path):
    with h5py.File(path) as f:
        return json.loads(f.attrs["params"])


def test_a_module_run_three_times_needs_its_call(cli, cohort, tmp_path):
    from radlens_cli.lens.checks import embedding_params, preprocessing_differences
    from tests.encoders.factories import reused_act

    net = reused_act()
    r = cli("embed", cohort, *ONE, "--encoder", REUSED, "--layer", "act", *BOX, "-o", tmp_path / "a.h5")
    assert r.exit_code == 2 and not (tmp_path / "a.h5").exists(), r
    assert "--layer act: the module runs 3 times" in r.stderr and "act#last" in r.stderr, r
    assert all(f"act#{k} {s}" in r.stderr for k, s in enumerate(CALL_SHAPES, 1)), r
    for layer, k in (("act#3", 3), ("act#last", 3), ("act#2", 2)):
        out = tmp_path / f"{layer}.h5"
        r = cli("embed", cohort, *ONE, "--encoder", REUSED, "--layer", layer, *BOX, "-o", out)
        assert r.exit_code == 0, r
        t = read_table(str(out))
        assert np.allclose(t.values, _hooked_reference(cohort, net, net.act, k), atol=1e-6)
        params = _params(out)
        # the choice is recorded as the call it is (#last -> #3), with the module's call count
        assert (params["layer"], params["layer_calls"]) == (f"act#{k}", 3)
        assert set(t.column_meta["layer"]) == {f"act#{k}"}
    assert np.array_equal(read_table(str(tmp_path / "act#3.h5")).values,
                          read_table(str(tmp_path / "act#last.h5")).values)
    # later commands read the choice back: the lens's check sees act#2 and act#3 as different layers
    attrs = [dict(h5py.File(tmp_path / f"act#{k}.h5").attrs) for k in (2, 3)]
    assert "layer (act#2 vs act#3)" in preprocessing_differences(*map(embedding_params, attrs))
    assert preprocessing_differences(*map(embedding_params, [attrs[1], dict(h5py.File(
        tmp_path / "act#last.h5").attrs)])) == []
    # a module that runs once is recorded as plain NAME (as files before call indices), however named
    r = cli("embed", cohort, *ONE, "--encoder", REUSED, "--layer", "conv2#1", *BOX, "-o", tmp_path / "c.h5")
    assert r.exit_code == 0, r
    assert _params(tmp_path / "c.h5")["layer"] == "conv2" and "layer_calls" not in _params(tmp_path / "c.h5")
    r = cli("embed", cohort, *ONE, "--encoder", REUSED, "--layer", "act#4", *BOX, "-o", tmp_path / "x.h5")
    assert r.exit_code == 2 and "--layer act#4: the module runs 3 time(s)" in r.stderr, r
    r = cli("embed", cohort, *ONE, "--encoder", REUSED, "--layer", "act#0", *BOX, "-o", tmp_path / "x.h5")
    assert r.exit_code == 2 and "1-based" in r.stderr, r


def test_torchscript_module_run_three_times(cli, cohort, tmp_path):
    from tests.encoders.factories import reused_act

    net = reused_act()
    for how in ("trace", "script"):
        ts = tmp_path / f"{how}.ts"
        (torch.jit.trace(net, torch.zeros(1, 1, 16, 32, 32)) if how == "trace" else torch.jit.script(net)).save(
            str(ts))
        r = cli("embed", cohort, *ONE, "--encoder", ts, "--layer", "act", *BOX, "-o", tmp_path / "a.h5")
        assert r.exit_code == 2 and all(f"act#{k} {s}" in r.stderr for k, s in enumerate(CALL_SHAPES, 1)), r
        out = tmp_path / f"{how}2.h5"
        r = cli("embed", cohort, *ONE, "--encoder", ts, "--layer", "act#2", *BOX, "-o", out)
        assert r.exit_code == 0, r
        assert np.allclose(read_table(str(out)).values, _hooked_reference(cohort, net, net.act, 2), atol=1e-6)
        assert _params(out)["layer"] == "act#2"
        r = cli("layers", ts, "--crop", "32,32,16", "--json")
        assert r.exit_code == 0, r
        rows = {x["layer"]: x for x in json.loads(r.stdout)["layers"]}
        assert "act" not in rows and [rows[f"act#{k}"]["shape"] for k in (1, 2, 3)] == [
            [int(d) for d in s.split("x")] for s in CALL_SHAPES]
        assert rows["act#3"]["calls"] == 3 and rows["conv1"]["calls"] == 1


def test_onnx_tensor_names_take_no_call_index(cli, cohort, tmp_path):
    """torch.onnx.export gives each call of a reused module its own node and tensor name."""
    from tests.encoders.factories import reused_act

    path = _export(reused_act(), tmp_path / "r.onnx")
    r = cli("layers", path, "--crop", "32,32,16", "--json")
    assert r.exit_code == 0, r
    rows = {x["layer"]: x for x in json.loads(r.stdout)["layers"]}
    assert rows["/act/Gelu_output_0"]["shape"] == [1, 4, 16, 32, 32]
    assert rows["/act_1/Gelu_output_0"]["shape"] == [1, 8, 8, 16, 16]
    assert all(x["calls"] == 1 for x in rows.values())
    r = cli("embed", cohort, *ONE, "--encoder", path, "--layer", "/act/Gelu_output_0#2", *BOX, "-o", tmp_path / "o.h5")
    assert r.exit_code == 2 and "takes no call index; give /act/Gelu_output_0" in r.stderr, r
