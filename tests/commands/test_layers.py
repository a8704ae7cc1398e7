"""`radlens layers` against the STYLE conventions (tests/commands/harness.py): the result is
printed on stdout (a table, or JSON with --json), nothing is written."""

import json

import pytest

from tests.commands import harness as h


def encoder(folder):
    import torch

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    save_radlens_checkpoint(str(folder / "enc.pt"), build_encoder("atto", 2), "convnextv2_atto", 2, None)
    return {"enc": folder / "enc.pt"}


SPEC = h.Spec("layers", encoder, lambda i, out, seed: [i["enc"], "--crop", "32,32,16", "--json"],
              read=lambda text: h.Output({"layers": json.loads(text)}, None), output="stdout")


def test_default_run_lists_the_stages_with_their_shapes(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path).data["layers"]
    assert out["input_shape"] == [1, 2, 16, 32, 32]  # (batch, channels from the checkpoint, z, y, x)
    rows = {r["layer"]: r for r in out["layers"]}
    assert rows["final"]["dim"] == 320
    # each ConvNeXt-V2 atto stage halves the box (stage1 by the stem's 4) and has 40/80/160/320 channels
    assert [rows[f"stage{k}"]["shape"] for k in (1, 2, 3)] == [[1, 40, 4, 8, 8], [1, 80, 2, 4, 4], [1, 160, 1, 2, 2]]
    assert [rows[f"stage{k}"]["dim"] for k in (1, 2, 3, 4)] == [40, 80, 160, 320]


def test_table_on_stdout_is_tab_separated(cli, tmp_path):
    files = encoder(tmp_path)
    r = cli("layers", files["enc"], "--crop", "32,32,16")
    assert r.exit_code == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split("\t") == ["layer", "kind", "output_shape", "dim", "calls"]
    assert lines[1].split("\t") == ["final", "model output", "1x320", "320", "1"]


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_encoder_same_listing(cli, tmp_path):
    h.determinism(cli, SPEC, tmp_path)


@pytest.mark.parametrize("args,code,needles", [
    (["{missing}"], 1, ["not found", "missing.pt"]),
    (["{enc}", "--crop", "32,32"], 2, ["--crop", "32,32"]),
    (["{enc}", "--channels", "0"], 2, ["--channels"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = encoder(tmp_path)
    files["missing"] = tmp_path / "missing.pt"
    h.bad_input(cli, SPEC, tmp_path, [a.format(**files) for a in args], code, *needles)


def test_a_module_run_three_times_gets_one_row_per_call(cli):
    r = cli("layers", "tests.encoders.factories:reused_act", "--crop", "32,32,16", "--channels", "1")
    assert r.exit_code == 0, r
    rows = [line.split("\t") for line in r.stdout.splitlines()]
    assert [x for x in rows if x[0].startswith("act")] == [
        ["act#1", "GELU", "1x4x16x32x32", "4", "3"],
        ["act#2", "GELU", "1x8x8x16x16", "8", "3"],
        ["act#3", "GELU", "1x16x4x8x8", "16", "3"]]
    assert ["conv2", "Conv3d", "1x8x8x16x16", "8", "1"] in rows


def test_resnet_bottleneck_shared_relu(cli):
    """A torchvision-style ResNet in 3D: each bottleneck's one `relu` runs after conv1, after
    the strided conv2 and after the residual add; the stem's relu runs once."""
    r = cli("layers", "tests.encoders.factories:tiny_resnet3d", "--crop", "32,32,16", "--channels", "1", "--json")
    assert r.exit_code == 0, r
    rows = {x["layer"]: x for x in json.loads(r.stdout)["layers"]}
    assert rows["relu"]["shape"] == [1, 8, 8, 16, 16] and rows["relu"]["calls"] == 1
    assert "layer2.0.relu" not in rows
    assert [rows[f"layer2.0.relu#{k}"]["shape"] for k in (1, 2, 3)] == [
        [1, 8, 8, 16, 16], [1, 8, 4, 8, 8], [1, 32, 4, 8, 8]]
    assert [rows[f"layer2.0.relu#{k}"]["dim"] for k in (1, 2, 3)] == [8, 8, 32]
    assert {rows[f"layer1.0.relu#{k}"]["calls"] for k in (1, 2, 3)} == {3}
    assert rows["fc"]["calls"] == 1 and rows["layer2.0.downsample.0"]["calls"] == 1
