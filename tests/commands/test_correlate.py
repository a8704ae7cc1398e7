"""`radlens correlate` against the STYLE conventions (tests/commands/harness.py)."""

import h5py
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from radlens_cli.io.tables import write_table
from tests.commands import harness as h
from tests.planted import RAD_COLUMNS as PLANTED_COLUMNS, planted_pair
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


# ---------------------------------------------------------------- moved from tests/rad4xcnn/test_cli_correlate.py

def test_default_run_matches_scipy(cli, tables, tmp_path):
    emb, rad = tables
    out, pairs, explain = tmp_path / "corr.h5", tmp_path / "pairs.csv", tmp_path / "ex.csv"
    r = cli("correlate", emb, rad, "-o", out, "--pairs", pairs, "--explain", explain)
    assert r.exit_code == 0, r
    assert r.stdout == ""
    assert "1 deep feature(s) excluded: emb_7 (constant)" in r.stderr
    assert f"{PLANTED_COLUMNS[9]} (constant)" in r.stderr
    e, g = planted_pair()
    with h5py.File(out) as f:
        assert f.attrs["radlens_schema"] == "correlation/1"
        rho, p, q = f["rho"][()], f["p"][()], f["q"][()]
        deep = [s.decode() for s in f["deep_features"][()]]
        cols = [s.decode() for s in f["columns"][()]]
        assert [s.decode() for s in f["excluded_columns"][()]] == [PLANTED_COLUMNS[9]]
        assert [s.decode() for s in f["excluded_column_reason"][()]] == ["constant"]
        assert f["column_family"][0].decode() == "firstorder"
        assert float(f.attrs["threshold"]) == 0.5
    assert rho.shape == (7, 15) and np.isfinite(rho).all() and np.isfinite(q).all()
    i, j = deep.index("emb_3"), cols.index(PLANTED_COLUMNS[5])
    ref = stats.spearmanr(e.values[:, 3], g.values[:, 5])
    assert abs(rho[i, j] - ref.statistic) < 1e-12 and abs(p[i, j] - ref.pvalue) <= 1e-10 * ref.pvalue
    df = pd.read_csv(pairs)
    assert list(df.columns) == ["deep_feature", "column", "modality", "image_type", "family", "feature",
                                "rho", "p", "q"]
    assert {("emb_0", PLANTED_COLUMNS[0]), ("emb_3", PLANTED_COLUMNS[5])} <= set(
        zip(df.deep_feature, df.column))
    assert ((df.rho.abs() >= 0.5) & (df.q < 0.05)).all()
    ex = pd.read_csv(explain).set_index("deep_feature")
    assert ex.loc["emb_0", "top_column"] == PLANTED_COLUMNS[0]
    assert len(ex) == 7


def test_pearson_and_split(cli, tables, tmp_path):
    emb, rad = tables
    out = tmp_path / "c.h5"
    r = cli("correlate", emb, rad, "-o", out, "--method", "pearson", "--split", "train")
    assert r.exit_code == 0, r
    e, g = planted_pair()
    tr = e.split == "train"
    with h5py.File(out) as f:
        assert len(f["case_id"]) == tr.sum()
        ref = stats.pearsonr(e.values[tr, 0], g.values[tr, 0]).statistic
        assert abs(f["rho"][0, 0] - ref) < 1e-12


def test_pipe_into_info_and_summary(cli, tables, tmp_path):
    emb, rad = tables
    r = cli("correlate", emb, rad, "-o", "-")
    assert r.exit_code == 0, r
    h5 = r.stdout_bytes
    assert h5[:4] == b"\x89HDF"
    info = cli("info", "-", input=h5)
    assert info.exit_code == 0, info
    assert "correlation/1" in info.stdout and "rho  7x15" in info.stdout
    pre = tmp_path / "pre.h5"
    pre.write_bytes(h5)
    s = cli("correlate-summary", pre, "-", "-o", "-", input=h5)
    assert s.exit_code == 0, s
    df = pd.read_csv(__import__("io").StringIO(s.stdout))
    assert list(df.columns[:5]) == ["modality", "family", "n_columns", "deep_pre", "deep_ft"]
    tot = df.set_index(["modality", "family"]).loc[("all", "all")]
    assert tot.n_columns == 16 and tot.deep_pre == tot.deep_ft == 2 and tot.delta_pairs == 0


def test_path_with_spaces_and_csv_input(cli, spaced_tmp):
    emb, rad = planted_pair()
    write_table(emb, str(spaced_tmp / "my emb.h5"))
    write_table(rad, str(spaced_tmp / "my rad.csv"))
    out = spaced_tmp / "out corr.h5"
    r = cli("correlate", spaced_tmp / "my emb.h5", spaced_tmp / "my rad.csv", "-o", out,
            "--pairs", spaced_tmp / "my pairs.csv")
    assert r.exit_code == 0, r
    with h5py.File(out) as f:  # CSV input: metadata parsed from the column names
        assert f["column_modality"][-1].decode() == "adc"
    assert (spaced_tmp / "my pairs.csv").exists()


def test_same_inputs_same_bytes(cli, tables, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    emb, rad = tables
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    assert cli("correlate", emb, rad, "-o", a).exit_code == 0
    assert cli("correlate", emb, rad, "-o", b).exit_code == 0
    assert a.read_bytes() == b.read_bytes()


def test_disjoint_cases(cli, tmp_path):
    emb, _ = planted_pair()
    _, rad = planted_pair(prefix="other")
    write_table(emb, str(tmp_path / "e.h5"))
    write_table(rad, str(tmp_path / "r.h5"))
    r = cli("correlate", tmp_path / "e.h5", tmp_path / "r.h5", "-o", tmp_path / "c.h5")
    assert r.exit_code == 1
    assert r.stderr.startswith("radlens correlate: error:") and "share no case_id" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.h5").exists()


def test_missing_cases_need_allow_missing(cli, tmp_path):
    emb, rad = planted_pair()
    write_table(emb, str(tmp_path / "e.h5"))
    write_table(rad.take(np.arange(50)), str(tmp_path / "r.h5"))
    r = cli("correlate", tmp_path / "e.h5", tmp_path / "r.h5", "-o", tmp_path / "c.h5")
    assert r.exit_code == 1 and "10 case(s) only in" in r.stderr and "--allow-missing" in r.stderr
    r = cli("correlate", tmp_path / "e.h5", tmp_path / "r.h5", "-o", tmp_path / "c.h5", "--allow-missing")
    assert r.exit_code == 0, r
    with h5py.File(tmp_path / "c.h5") as f:
        assert len(f["case_id"]) == 50


def test_output_exists_without_force(cli, tables, tmp_path):
    emb, rad = tables
    out = tmp_path / "c.h5"
    out.write_text("keep me")
    r = cli("correlate", emb, rad, "-o", out)
    assert r.exit_code == 1
    assert r.stderr.strip() == f"radlens correlate: error: output exists: {out} (use --force to overwrite)"
    assert out.read_text() == "keep me"
    assert cli("correlate", emb, rad, "-o", out, "--force").exit_code == 0


def test_not_a_radlens_file(cli, tables, tmp_path):
    emb, _ = tables
    bad = tmp_path / "plain.h5"
    with h5py.File(bad, "w") as f:
        f["x"] = np.zeros(3)
    r = cli("correlate", emb, bad, "-o", tmp_path / "c.h5")
    assert r.exit_code == 1 and "not a radlens file" in r.stderr
    r = cli("correlate-summary", bad, bad, "-o", tmp_path / "s.csv")
    assert r.exit_code == 1 and "not a radlens file" in r.stderr
    r = cli("correlate-summary", emb, emb, "-o", tmp_path / "s.csv")
    assert r.exit_code == 1 and "is a radlens case-table/1, expected correlation/1" in r.stderr


def test_bad_options_are_usage_errors(cli, tables, tmp_path):
    emb, rad = tables
    r = cli("correlate", emb, rad, "-o", tmp_path / "c.h5", "--method", "kendall")
    assert r.exit_code == 2 and "--method kendall" in r.stderr
    r = cli("correlate", emb, rad, "-o", "-", "--pairs", "-")
    assert r.exit_code == 2 and "only one of" in r.stderr
    r = cli("correlate", emb, rad, "-o", tmp_path / "c.h5", "--threshold", "1.5")
    assert r.exit_code == 2
