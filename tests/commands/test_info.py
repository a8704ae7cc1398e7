"""`radlens info` against the STYLE conventions (tests/commands/harness.py)."""

import json

import pytest

from radlens_cli import __version__
from tests.commands import harness as h
from radlens_cli.commands.correlate import correlate
from tests.commands.tables import emb_rad


def inputs(folder):
    """A file a radlens command wrote (with its provenance): correlate's."""
    t = emb_rad(folder)
    correlate(str(t["emb"]), str(t["rad"]), str(folder / "corr.h5"))
    return {"table": folder / "corr.h5"}


def read_json(text):
    """info --json as data: what the file holds (schema, datasets, parameters, input hashes),
    not where it was or when it was made (paths, command lines and times are provenance)."""
    d = json.loads(text)
    data = {k: json.dumps(d.get(k), sort_keys=True) for k in ("schema", "datasets", "params", "radlens_version",
                                                             "cite")}
    data["input_sha256"] = json.dumps({k: v.get("sha256") for k, v in d.get("inputs", {}).items()})
    return h.Output(data, d.get("params"), d)


SPEC = h.Spec("info", inputs,
              lambda i, out, seed: ["--json", i["table"]], read=read_json, output="stdout", stdin_role="table")


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    d = out.attrs
    assert d["schema"] == "correlation/1" and d["datasets"]["rho"] == [5, 8]
    assert d["radlens_version"] == __version__ and d["params"]["method"] == "spearman"
    assert [rec["subcommand"] for rec in d["history"]] == ["correlate"]
    assert "A Radiomic Lens" in d["cite"] and "Rad4XCNN" in d["cite"]  # what to cite
    r = cli("info", tmp_path / "corr.h5")  # the text form names the same schema and shape
    assert r.exit_code == 0 and "correlation/1" in r.stdout and "rho  5x8" in r.stdout


def test_pipe(cli, tmp_path):
    h.pipe_in(cli, SPEC, tmp_path)  # info's result is its stdout: `radlens ... -o - | radlens info -`


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_input_same_output(cli, tmp_path):
    h.determinism(cli, SPEC, tmp_path)


@pytest.mark.parametrize("args,code,needles", [
    (["{missing}"], 1, ["input file not found", "missing.h5"]),
    (["{onnx}"], 1, ["broken.onnx"]),
    (["{table}", "--nope"], 2, ["--nope"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = {"table": inputs(tmp_path)["table"], "missing": tmp_path / "missing.h5", "onnx": tmp_path / "broken.onnx"}
    files["onnx"].write_text("not an onnx model\n")
    h.bad_input(cli, SPEC, tmp_path, [a.format(**files) for a in args], code, *needles)


def test_a_text_file_that_is_no_radlens_file_is_described_as_such(cli, tmp_path):
    (tmp_path / "notes.txt").write_text("not hdf5\n")
    r = cli("info", tmp_path / "notes.txt")
    assert r.exit_code == 0 and "not a radlens file" in r.stdout, r
