"""`radlens init-encoder` against the STYLE conventions (tests/commands/harness.py)."""

import numpy as np
import pytest
import torch

from tests.commands import harness as h

SPEC = h.Spec("init-encoder", lambda folder: {},
              lambda i, out, seed: ["--arch", "atto", "--in-chans", "2", "-o", out, "--seed", seed],
              read=h.read_checkpoint, out_name="enc.pt", seeded=True, seed_path=("init", "seed"))


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    assert out.params["arch"] == "convnextv2_atto" and out.params["in_chans"] == 2
    assert out.params["init"] == {"kind": "random", "seed": 0}
    # the checkpoint says how it was made, as a fine-tuned one does (radlens info shows it)
    import json

    prov = out.attrs["provenance"]
    assert json.loads(prov["history"])[-1]["subcommand"] == "init-encoder"
    assert json.loads(prov["params"]) == {"arch": "convnextv2_atto", "in_chans": 2, "seed": 0}
    stem = [k for k in out.data if k.endswith("weight") and out.data[k].ndim == 5][0]
    assert out.data[stem].shape[1] == 2  # the first convolution takes the two input channels
    # ProFound's initialisation: trunc_normal_(std=0.02) (cut at +-2, i.e. a plain normal here)
    w = out.data[stem].ravel().astype(np.float64)
    assert len(w) > 4000 and abs(w.std() - 0.02) < 0.0015 and abs(w.mean()) < 0.002


def test_pipe_is_refused(cli, tmp_path):
    h.pipe_refused(cli, SPEC, tmp_path, "a checkpoint must be written to a file")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_seed_same_weights_and_parameters(cli, tmp_path):
    a, _, c = h.determinism(cli, SPEC, tmp_path)
    assert any(not np.array_equal(a.data[k], c.data[k]) for k in a.data)  # another seed, other weights


@pytest.mark.parametrize("args,code,needles", [
    (["--arch", "convnextv2_giant", "-o", "{out}"], 2, ["convnextv2_giant"]),
    (["--in-chans", "0", "-o", "{out}"], 2, ["--in-chans"]),
    (["-o", "{missing}"], 1, ["output folder does not exist"]),
    (["--arch", "atto", "-o", "{taken}"], 1, ["output exists", "taken.pt"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    (tmp_path / "taken.pt").write_bytes(b"x")
    files = {"out": tmp_path / "e.pt", "missing": tmp_path / "nope" / "e.pt", "taken": tmp_path / "taken.pt"}
    h.bad_input(cli, SPEC, tmp_path, [a.format(**files) for a in args], code, *needles)


def test_init_encoder_is_seeded(cli, tmp_path):
    outs = []
    for name, seed in (("a.pt", 0), ("b.pt", 0), ("c.pt", 1)):
        r = cli("init-encoder", "--arch", "convnextv2_atto", "--in-chans", "3", "--seed", seed,
                "-o", tmp_path / name)
        assert r.exit_code == 0, r
        outs.append(torch.load(tmp_path / name, weights_only=True))
    assert outs[0]["arch"] == "convnextv2_atto" and outs[0]["in_chans"] == 3
    assert all(torch.equal(outs[0]["state_dict"][k], outs[1]["state_dict"][k]) for k in outs[0]["state_dict"])
    assert not torch.equal(outs[0]["state_dict"]["stages.0.0.dwconv.weight"],
                           outs[2]["state_dict"]["stages.0.0.dwconv.weight"])
    r = cli("init-encoder", "--arch", "atto", "-o", tmp_path / "a.pt")
    assert r.exit_code == 1 and "output exists" in r.stderr and "--force" in r.stderr
    r = cli("init-encoder", "--arch", "convnextv2_giant", "-o", tmp_path / "g.pt")
    assert r.exit_code == 2 and "unknown architecture" in r.stderr and not (tmp_path / "g.pt").exists()
