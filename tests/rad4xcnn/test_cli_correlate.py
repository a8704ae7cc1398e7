"""`radlens correlate` and `radlens correlate-summary` through the real app."""

import h5py
import numpy as np
import pandas as pd
from scipy import stats

from radlens_cli.io.tables import write_table
from tests.rad4xcnn.conftest import RAD_COLUMNS, planted


def test_default_run_matches_scipy(cli, tables, tmp_path):
    emb, rad = tables
    out, pairs, explain = tmp_path / "corr.h5", tmp_path / "pairs.csv", tmp_path / "ex.csv"
    r = cli("correlate", emb, rad, "-o", out, "--pairs", pairs, "--explain", explain)
    assert r.exit_code == 0, r
    assert r.stdout == ""
    assert "1 deep feature(s) excluded: emb_7 (constant)" in r.stderr
    assert f"{RAD_COLUMNS[9]} (constant)" in r.stderr
    e, g = planted()
    with h5py.File(out) as f:
        assert f.attrs["radlens_schema"] == "correlation/1"
        rho, p, q = f["rho"][()], f["p"][()], f["q"][()]
        deep = [s.decode() for s in f["deep_features"][()]]
        cols = [s.decode() for s in f["columns"][()]]
        assert [s.decode() for s in f["excluded_columns"][()]] == [RAD_COLUMNS[9]]
        assert [s.decode() for s in f["excluded_column_reason"][()]] == ["constant"]
        assert f["column_family"][0].decode() == "firstorder"
        assert float(f.attrs["threshold"]) == 0.5
    assert rho.shape == (7, 15) and np.isfinite(rho).all() and np.isfinite(q).all()
    i, j = deep.index("emb_3"), cols.index(RAD_COLUMNS[5])
    ref = stats.spearmanr(e.values[:, 3], g.values[:, 5])
    assert abs(rho[i, j] - ref.statistic) < 1e-12 and abs(p[i, j] - ref.pvalue) <= 1e-10 * ref.pvalue
    df = pd.read_csv(pairs)
    assert list(df.columns) == ["deep_feature", "column", "modality", "image_type", "family", "feature",
                                "rho", "p", "q"]
    assert {("emb_0", RAD_COLUMNS[0]), ("emb_3", RAD_COLUMNS[5])} <= set(
        zip(df.deep_feature, df.column))
    assert ((df.rho.abs() >= 0.5) & (df.q < 0.05)).all()
    ex = pd.read_csv(explain).set_index("deep_feature")
    assert ex.loc["emb_0", "top_column"] == RAD_COLUMNS[0]
    assert len(ex) == 7


def test_pearson_and_split(cli, tables, tmp_path):
    emb, rad = tables
    out = tmp_path / "c.h5"
    r = cli("correlate", emb, rad, "-o", out, "--method", "pearson", "--split", "train")
    assert r.exit_code == 0, r
    e, g = planted()
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


def test_summary_counts_change(cli, tmp_path):
    emb, rad = planted()
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


def test_path_with_spaces_and_csv_input(cli, spaced_tmp):
    emb, rad = planted()
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
    emb, _ = planted()
    _, rad = planted(prefix="other")
    write_table(emb, str(tmp_path / "e.h5"))
    write_table(rad, str(tmp_path / "r.h5"))
    r = cli("correlate", tmp_path / "e.h5", tmp_path / "r.h5", "-o", tmp_path / "c.h5")
    assert r.exit_code == 1
    assert r.stderr.startswith("radlens correlate: error:") and "share no case_id" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.h5").exists()


def test_missing_cases_need_allow_missing(cli, tmp_path):
    emb, rad = planted()
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


def test_summary_refuses_different_column_sets(cli, tmp_path):
    emb, rad = planted()
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
