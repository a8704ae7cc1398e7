"""`radlens correlate-summary` against the STYLE conventions (tests/commands/harness.py)."""

import pytest

from radlens_cli.commands.correlate import correlate
from tests.commands import harness as h
from tests.commands.tables import emb_rad


def inputs(folder):
    """Two correlation files over the same radiomic columns: pre from one embedding, ft from
    another whose noise columns moved (the planted pairs are in both)."""
    out = {}
    for stage, seed in (("pre", 0), ("ft", 1)):
        (folder / stage).mkdir(exist_ok=True)
        t = emb_rad(folder / stage, seed=seed)
        correlate(str(t["emb"]), str(t["rad"]), str(folder / f"corr_{stage}.h5"))
        out[stage] = folder / f"corr_{stage}.h5"
    return out


SPEC = h.Spec("correlate-summary", inputs, lambda i, out, seed: [i["pre"], i["ft"], "-o", out],
              read=h.read_csv, out_name="summary.csv", stdin_role="ft")


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    rows = {(m, f): k for k, (m, f) in enumerate(zip(out.data["modality"], out.data["family"]))}
    # the planted pairs: emb_0 ~ t2 firstorder, emb_2 ~ t2 glcm, in both stages
    for key, pairs in ((("t2", "firstorder"), 1), (("t2", "glcm"), 1), (("adc", "firstorder"), 0),
                       (("adc", "glcm"), 0)):
        assert out.data["pairs_pre"][rows[key]] == pairs and out.data["pairs_ft"][rows[key]] == pairs, key
    assert out.data["pairs_pre"][rows[("t2", "all")]] == 2


def test_pipe(cli, tmp_path):
    h.pipe_out(cli, SPEC, tmp_path / "out")
    h.pipe_in(cli, SPEC, tmp_path / "in")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_inputs_same_values(cli, tmp_path):
    h.determinism(cli, SPEC, tmp_path)


@pytest.mark.parametrize("args,code,needles", [
    (["-", "-", "-o", "{out}"], 2, ["only one of the two correlation files can be `-`"]),
    (["{pre}", "{missing}", "-o", "{out}"], 1, ["missing.h5"]),
    (["{pre}", "{emb}", "-o", "{out}"], 1, ["emb.h5"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = inputs(tmp_path)
    files.update(missing=tmp_path / "missing.h5", out=tmp_path / "s.csv", emb=tmp_path / "pre" / "emb.h5")
    h.bad_input(cli, SPEC, tmp_path, [a.format(**files) for a in args], code, *needles, input=b"x")
