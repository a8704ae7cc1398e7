"""`radlens decode` against the STYLE conventions (tests/commands/harness.py)."""

import numpy as np

from tests.commands import harness as h


def spec(lens_run):
    inputs = h.copied(lens_run[0], {"share": "share.h5", "emb": "emb_ft.h5", "rad": "rad.h5"})
    return h.Spec("decode", inputs, lambda i, out, seed: [i["share"], i["emb"], i["rad"], "-o", out],
                  read=h.read_h5, out_name="dec.h5", stdin_role="emb")


def test_default_run(cli, lens_run, tmp_path):
    out = h.default_run(cli, spec(lens_run), tmp_path)
    assert out.attrs["radlens_schema"] == "decoder/1"
    theta, r2 = out.data["theta"], out.data["r2"]
    assert theta.shape[0] == len(out.data["columns"]) == len(r2)
    # R^2 is 1 - RSS/TSS of the stored eval predictions (recomputed here)
    t, p = out.data["eval/target"].astype(np.float64), out.data["eval/prediction"].astype(np.float64)
    want = 1 - ((t - p) ** 2).sum(0) / ((t - t.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(r2, want, atol=1e-4)


def test_pipe_out_and_embeddings_from_stdin(cli, lens_run, tmp_path):
    s = spec(lens_run)
    h.pipe_out(cli, s, tmp_path / "out")
    h.pipe_in(cli, s, tmp_path / "in")


def test_path_with_spaces(cli, lens_run, tmp_path):
    h.spaces(cli, spec(lens_run), tmp_path)


def test_same_inputs_same_values_and_parameters(cli, lens_run, tmp_path):
    h.determinism(cli, spec(lens_run), tmp_path)


def test_bad_inputs(cli, lens_run, tmp_path):
    s = spec(lens_run)
    files = s.inputs(tmp_path)
    h.bad_input(cli, s, tmp_path, [files["emb"], files["emb"], files["rad"], "-o", tmp_path / "d.h5"], 1,
                "emb_ft.h5", "expected share-model/1")
    h.bad_input(cli, s, tmp_path, [files["share"], files["emb"], files["rad"], "-o", tmp_path / "d.h5",
                                   "--eval-split", "nope"], 1, "no `nope` cases for evaluation")


def test_closing_line_says_what_the_decoder_holds(cli, lens_run, tmp_path):
    """decode's last line (lens.decode_summary): columns, h, n_train, rank and condition number,
    evaluation cases, mean R^2 and MSE as stored in DEC.h5, the method and the alignment."""
    import h5py

    d, P = lens_run
    r = cli("decode", d / "share.h5", d / "emb_ft.h5", d / "rad.h5", "-o", tmp_path / "dec.h5")
    assert r.exit_code == 0, r
    line = r.stderr.strip().splitlines()[-1]
    with h5py.File(tmp_path / "dec.h5") as f:
        r2, mse, n_eval = f["r2"][()], f["mse"][()], len(f["eval/case_id"])
    assert line.startswith(f"radlens: decoder: {len(r2)} columns from h=64 (n_train=")
    assert f"test: {n_eval} cases, mean R2 {float(np.mean(r2)):.3f}, MSE {float(np.mean(mse)):.4g}" in line
    assert "; method calibrated, aligned (similarity, scale " in line and ", cond " in line
