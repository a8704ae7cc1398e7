"""`radlens synth` against the STYLE conventions (tests/commands/harness.py)."""

import pandas as pd
import pytest

from tests.commands import harness as h

SMALL = ["--cases", "3", "--size", "12,12,4"]
SPEC = h.Spec("synth", lambda folder: {}, lambda i, out, seed: ["-o", out, *SMALL, "--seed", seed],
              read=h.read_folder, output="folder", out_name="phantom", seeded=True)


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    man = pd.read_csv(tmp_path / "phantom" / "cohort.csv")
    assert len(man) == 3 and man.case_id.is_unique
    for col in ("t2", "adc", "dwi", "gland"):  # every path the manifest names was written
        assert all(p in out.data for p in man[col]), col
    assert out.params == {"cases": 3, "seed": 0, "size": [12, 12, 4], "spacing": [0.5, 0.5, 3.0],
                          "scanner": False}
    assert "cite" in out.attrs


def test_pipe_is_refused(cli, tmp_path):
    h.pipe_refused(cli, SPEC, tmp_path, "a cohort is a folder")
    assert not (tmp_path / "-").exists()


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_seed_same_bytes_and_parameters(cli, tmp_path):
    a, _, c = h.determinism(cli, SPEC, tmp_path)
    assert a.data["cohort.csv"] != c.data["cohort.csv"]  # another seed, another cohort


@pytest.mark.parametrize("args,code,needles", [
    (["-o", "{file}", *SMALL], 1, ["output is a file, not a folder", "taken"]),
    (["-o", "{full}", *SMALL], 1, ["output folder is not empty", "full"]),
    (["-o", "{out}", "--cases", "0"], 2, ["--cases"]),
    (["-o", "{out}", "--size", "12,12"], 2, ["--size"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    (tmp_path / "taken").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    files = {"file": tmp_path / "taken", "full": tmp_path / "full", "out": tmp_path / "new"}
    h.bad_input(cli, SPEC, tmp_path, [a.format(**files) for a in args], code, *needles)
