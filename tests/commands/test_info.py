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


def test_csv_and_json_sidecar_show_inputs_and_params(cli, tmp_path):
    """Issue 25: CSV sidecars were empty and `info x.csv.json` showed the JSON as a CSV."""
    from radlens_cli.provenance import sha256_file

    t = emb_rad(tmp_path)
    r = cli("correlate", t["emb"], t["rad"], "-o", tmp_path / "c.h5", "--pairs", tmp_path / "pairs.csv",
            "--threshold", "0.3")
    assert r.exit_code == 0, r
    d = json.loads(cli("info", "--json", tmp_path / "pairs.csv").stdout)
    assert d["inputs"]["embeddings"]["sha256"] == sha256_file(t["emb"])
    assert d["params"]["threshold"] == 0.3 and d["history"][-1]["subcommand"] == "correlate"
    assert d["schema"] == "correlate output (csv-provenance/1, provenance in its sidecar)"
    text = cli("info", tmp_path / "pairs.csv").stdout
    assert f"input radiomics: {t['rad']}  sha256 {sha256_file(t['rad'])}" in text
    side = cli("info", tmp_path / "pairs.csv.json")
    assert side.exit_code == 0, side
    assert "provenance sidecar of pairs.csv (JSON)" in side.stdout and "threshold" in side.stdout
    (tmp_path / "plain.json").write_text('{"a": 1, "b": [2]}')
    plain = cli("info", tmp_path / "plain.json")
    assert plain.exit_code == 0 and "(JSON)" in plain.stdout and "CSV" not in plain.stdout
