"""`radlens init-encoder` against the STYLE conventions (tests/commands/harness.py)."""

import numpy as np
import pytest

from tests.commands import harness as h

SPEC = h.Spec("init-encoder", lambda folder: {},
              lambda i, out, seed: ["--arch", "atto", "--in-chans", "2", "-o", out, "--seed", seed],
              read=h.read_checkpoint, out_name="enc.pt", seeded=True, seed_path=("init", "seed"))


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    assert out.params["arch"] == "convnextv2_atto" and out.params["in_chans"] == 2
    assert out.params["init"] == {"kind": "random", "seed": 0}
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
