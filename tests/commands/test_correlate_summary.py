"""`radlens correlate-summary` against the STYLE conventions (tests/commands/harness.py)."""

import numpy as np
import pandas as pd
import pytest

from radlens_cli.commands.correlate import correlate
from radlens_cli.io.tables import write_table
from tests.commands import harness as h
from tests.planted import planted_pair
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


# ---------------------------------------------------------------- moved from tests/rad4xcnn/test_cli_correlate.py

def test_summary_counts_change(cli, tmp_path):
    emb, rad = planted_pair()
    write_table(rad, str(tmp_path / "rad.h5"))
    write_table(emb, str(tmp_path / "pre.h5"))
    ft = emb.take()
    ft.values[:, 1] = rad.values[:, 10] + 0.1 * np.random.default_rng(0).normal(size=ft.n_cases)
    write_table(ft, str(tmp_path / "ft.h5"))
    for s in ("pre", "ft"):
        assert cli("correlate", tmp_path / f"{s}.h5", tmp_path / "rad.h5", "-o", tmp_path / f"c_{s}.h5").exit_code == 0
    r = cli("correlate-summary", tmp_path / "c_pre.h5", tmp_path / "c_ft.h5", "-o", tmp_path / "s.csv")
    assert r.exit_code == 0, r
    df = pd.read_csv(tmp_path / "s.csv").set_index(["modality", "family"])
    assert df.loc[("adc", "glcm"), "deep_pre"] == 0 and df.loc[("adc", "glcm"), "deep_ft"] == 1
    assert df.loc[("all", "all"), "delta_deep"] == 1


def test_summary_refuses_different_column_sets(cli, tmp_path):
    emb, rad = planted_pair()
    write_table(emb, str(tmp_path / "e.h5"))
    write_table(rad, str(tmp_path / "r.h5"))
    write_table(rad.take(cols=np.arange(12)), str(tmp_path / "r12.h5"))
    assert cli("correlate", tmp_path / "e.h5", tmp_path / "r.h5", "-o", tmp_path / "a.h5").exit_code == 0
    assert cli("correlate", tmp_path / "e.h5", tmp_path / "r12.h5", "-o", tmp_path / "b.h5").exit_code == 0
    r = cli("correlate-summary", tmp_path / "a.h5", tmp_path / "b.h5", "-o", tmp_path / "s.csv")
    assert r.exit_code == 1
    assert "different radiomic column sets: 4 only in" in r.stderr and "adc/wavelet-LLH" in r.stderr
    assert not (tmp_path / "s.csv").exists()


def test_summary_refuses_different_thresholds_unless_given(cli, tables, tmp_path):
    emb, rad = tables
    assert cli("correlate", emb, rad, "-o", tmp_path / "a.h5").exit_code == 0
    assert cli("correlate", emb, rad, "-o", tmp_path / "b.h5", "--threshold", "0.3").exit_code == 0
    r = cli("correlate-summary", tmp_path / "a.h5", tmp_path / "b.h5", "-o", tmp_path / "s.csv")
    assert r.exit_code == 2 and "give --threshold" in r.stderr
    r = cli("correlate-summary", tmp_path / "a.h5", tmp_path / "b.h5", "-o", tmp_path / "s.csv",
            "--threshold", "0.4")
    assert r.exit_code == 0, r
