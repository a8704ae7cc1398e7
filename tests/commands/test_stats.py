"""`radlens stats` against the STYLE conventions (tests/commands/harness.py); the planted
Table 1 is checked in tests/lens/test_cli_lens.py."""

from tests.commands import harness as h


def spec(lens_run):
    inputs = h.copied(lens_run[0], {"pre": "dec_pre.h5", "ft": "dec_ft.h5"})
    return h.Spec("stats", inputs, lambda i, out, seed: [i["pre"], i["ft"], "-o", out],
                  read=lambda p: h.read_csv(p, params_columns=("checkpoint",)), out_name="stats.csv",
                  stdin_role="pre")


def test_default_run(cli, lens_run, tmp_path):
    out = h.default_run(cli, spec(lens_run), tmp_path)
    assert out.params == {"checkpoint": "dec_ft"}
    assert set(out.data["group_by"]) == {"family", "image_type", "modality", "modality_family"}
    assert (out.data["n_features"] > 0).all()


def test_pipe_out_and_reference_from_stdin(cli, lens_run, tmp_path):
    s = spec(lens_run)
    h.pipe_out(cli, s, tmp_path / "out")
    h.pipe_in(cli, s, tmp_path / "in")


def test_path_with_spaces(cli, lens_run, tmp_path):
    h.spaces(cli, spec(lens_run), tmp_path)


def test_same_inputs_same_table(cli, lens_run, tmp_path):
    h.determinism(cli, spec(lens_run), tmp_path)


def test_bad_inputs(cli, lens_run, tmp_path):
    s = spec(lens_run)
    files = s.inputs(tmp_path)
    h.bad_input(cli, s, tmp_path, [files["pre"], files["ft"], "-o", tmp_path / "t.csv", "--by", "colour"], 2,
                "colour")
    h.bad_input(cli, s, tmp_path, [files["pre"], tmp_path / "nope.h5", "-o", tmp_path / "t.csv"], 1, "nope.h5")
