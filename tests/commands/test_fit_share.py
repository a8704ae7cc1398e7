"""`radlens fit-share` against the STYLE conventions (tests/commands/harness.py); the method's
maths is tested in tests/lens/, the planted end-to-end run in tests/lens/test_cli_lens.py."""

import numpy as np

from radlens_cli.io.tables import write_table
from tests.commands import harness as h
from tests.planted import planted_cohort

FIT = ["--hidden", "8", "--epochs", "2", "--device", "cpu"]


def inputs(folder):
    P = planted_cohort(n=120, n_train=84, n_val=12, d=16, n_A=4, n_down=2, n_up=2, n_noise=4)
    write_table(P.emb_pre, str(folder / "emb_pre.h5"))
    write_table(P.rad, str(folder / "rad.h5"))
    return {"emb": folder / "emb_pre.h5", "rad": folder / "rad.h5"}


def read(path):
    """SHARE.h5; the ridge alpha fit-share records among its parameters is chosen from the
    data (cross-validated on the fitted share), so it is compared as a computed value."""
    out = h.read_h5(path)
    out.data["chosen_ridge"] = out.params.pop("ridge")
    return out


SPEC = h.Spec("fit-share", inputs, lambda i, out, seed: [i["emb"], i["rad"], "-o", out, *FIT, "--seed", seed],
              read=read, out_name="share.h5", stdin_role="rad", seeded=True)


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    assert out.attrs["radlens_schema"] == "share-model/1"
    assert out.data["weight"].shape == (16, 8) and out.params["hidden"] == 8 and out.params["seed"] == 0
    assert len(out.data["columns"]) == out.data["scale_offset"].shape[0]


def test_pipe_out_and_radiomics_from_stdin(cli, tmp_path):
    h.pipe_out(cli, SPEC, tmp_path / "out")
    h.pipe_in(cli, SPEC, tmp_path / "in")


def test_same_seed_same_weights_and_parameters(cli, tmp_path):
    a, _, c = h.determinism(cli, SPEC, tmp_path)
    assert not np.array_equal(a.data["weight"], c.data["weight"])  # another seed, another initialisation


def test_bad_inputs(cli, tmp_path):
    files = inputs(tmp_path)
    h.bad_input(cli, SPEC, tmp_path, [files["emb"], tmp_path / "nope.h5", "-o", tmp_path / "s.h5"], 1, "nope.h5")
    h.bad_input(cli, SPEC, tmp_path, [files["emb"], files["rad"], "-o", tmp_path / "s.h5", "--activation", "elu"],
                2, "--activation")


def test_sweep_without_val_cases_names_the_option(cli, tmp_path):
    from radlens_cli.io.tables import read_table

    files = inputs(tmp_path)
    for role in ("emb", "rad"):
        t = read_table(str(files[role]))
        t.split = np.where(t.split == "val", "train", t.split).astype(object)
        write_table(t, str(files[role]), force=True)
    h.bad_input(cli, SPEC, tmp_path, [files["emb"], files["rad"], "-o", tmp_path / "s.h5", *FIT, "--sweep"], 1,
                "--sweep selects on the `val` split, but there are no val cases")
