"""`radlens correlate` against the STYLE conventions (tests/commands/harness.py)."""

import numpy as np
import pytest

from tests.commands import harness as h
from tests.commands.tables import RAD_COLUMNS, emb_rad

SPEC = h.Spec("correlate", emb_rad, lambda i, out, seed: [i["emb"], i["rad"], "-o", out],
              read=h.read_h5, out_name="corr.h5", stdin_role="emb")


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    assert out.attrs["radlens_schema"] == "correlation/1"
    assert out.params["method"] == "spearman" and out.params["threshold"] == 0.5
    deep, cols = list(out.data["deep_features"]), list(out.data["columns"])
    rho = out.data["rho"]
    assert rho.shape == (5, 8)
    # monotone transforms: exactly +1 and -1, on cases joined by id (rad.h5 is stored reversed)
    assert rho[deep.index("emb_0"), cols.index(RAD_COLUMNS[0])] == pytest.approx(1.0, abs=1e-12)
    assert rho[deep.index("emb_2"), cols.index(RAD_COLUMNS[3])] == pytest.approx(-1.0, abs=1e-12)
    assert np.all(np.abs(rho) <= 1 + 1e-12)
    assert "cite" in out.attrs and "Rad4XCNN" in out.attrs["cite"]  # what to cite travels with the file


def test_pipe(cli, tmp_path):
    h.pipe_out(cli, SPEC, tmp_path / "out")
    h.pipe_in(cli, SPEC, tmp_path / "in")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_inputs_same_values_and_parameters(cli, tmp_path):
    h.determinism(cli, SPEC, tmp_path)  # no seed: the same run twice is the same, params included


@pytest.mark.parametrize("args,code,needles", [
    (["{emb}", "{rad}", "-o", "{out}", "--method", "kendall"], 2, ["--method kendall"]),
    (["{emb}", "{rad}", "-o", "{out}", "--threshold", "2"], 2, ["--threshold 2"]),
    (["{emb}", "{missing}", "-o", "{out}"], 1, ["missing.h5"]),
    (["{emb}", "{rad}", "-o", "{emb}"], 1, ["output exists", "emb.h5"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = emb_rad(tmp_path)
    files.update(missing=tmp_path / "missing.h5", out=tmp_path / "c.h5")
    h.bad_input(cli, SPEC, tmp_path, [a.format(**files) for a in args], code, *needles)
