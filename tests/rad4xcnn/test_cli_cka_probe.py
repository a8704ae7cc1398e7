"""`radlens cka` and `radlens probe` through the real app."""

import io

import h5py
import numpy as np
import pandas as pd
import pytest

from radlens_cli.io.tables import CaseTable, write_table
from radlens_cli.lens import cka as lk
from tests.commands.conftest import planted, tables  # noqa: F401 (fixture)


def test_cka_prints_one_number(cli, tables):
    emb, rad = tables
    r = cli("cka", emb, rad)
    assert r.exit_code == 0, r
    e, g = planted()
    assert r.stdout.strip() == f"{lk.cka(e.values, g.values):.6f}"
    r = cli("cka", emb, emb, "--debiased")
    assert r.stdout.strip() == "1.000000"


def test_cka_csv_bootstrap_deterministic(cli, tables, tmp_path):
    emb, rad = tables
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        r = cli("cka", emb, rad, "-o", out, "--bootstrap", "30", "--seed", "3", "--kernel", "rbf", "--debiased")
        assert r.exit_code == 0, r
    assert a.read_text() == b.read_text()
    row = pd.read_csv(a).iloc[0]
    assert row.n_cases == 60 and row.dims_a == 8 and row.dims_b == 16 and row.n_bootstrap == 30
    assert row.ci_low <= row.cka <= row.ci_high


def test_cka_pipe_and_spaces(cli, spaced_tmp):
    emb, rad = planted()
    write_table(emb, str(spaced_tmp / "e 1.h5"))
    write_table(rad, str(spaced_tmp / "r 1.h5"))
    r = cli("cka", spaced_tmp / "e 1.h5", "-", "-o", "-", input=(spaced_tmp / "r 1.h5").read_bytes())
    assert r.exit_code == 0, r
    df = pd.read_csv(io.StringIO(r.stdout))
    assert len(df) == 1 and df.loc[0, "cka"] == pytest.approx(lk.cka(emb.values, rad.values), rel=1e-9)


def test_cka_drops_nonfinite_columns_and_uses_shared_cases(cli, tmp_path):
    emb, rad = planted()
    rad.values[4, 2] = np.nan
    write_table(emb, str(tmp_path / "e.h5"))
    write_table(rad.take(np.arange(40)), str(tmp_path / "r.h5"))
    r = cli("cka", tmp_path / "e.h5", tmp_path / "r.h5", "--standardize")
    assert r.exit_code == 0, r
    assert "dropped 1 column(s) with non-finite values: t2/original_glcm_F0" in r.stderr
    assert "40 shared cases" in r.stderr
    keep = [j for j in range(16) if j != 2]
    z = lambda v: (v - v.mean(0)) / np.where(v.std(0) > 0, v.std(0), 1)  # noqa: E731
    ref = lk.cka(z(emb.values[:40]), z(rad.values[:40][:, keep]))
    assert float(r.stdout) == pytest.approx(ref, abs=1e-6)


def test_cka_bad_inputs(cli, tables, tmp_path):
    emb, _ = tables
    _, other = planted(prefix="zz")
    write_table(other, str(tmp_path / "o.h5"))
    r = cli("cka", emb, tmp_path / "o.h5")
    assert r.exit_code == 1 and "share no case_id" in r.stderr
    r = cli("cka", emb, emb, "--bootstrap", "5")
    assert r.exit_code == 2 and "needs -o" in r.stderr
    r = cli("cka", emb, emb, "--kernel", "poly")
    assert r.exit_code == 2
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(2)
    r = cli("cka", emb, plain)
    assert r.exit_code == 1 and "not a radlens file" in r.stderr
    (tmp_path / "exists.csv").write_text("x")
    r = cli("cka", emb, emb, "-o", tmp_path / "exists.csv")
    assert r.exit_code == 1 and "output exists" in r.stderr


@pytest.fixture
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    n = 80
    ids = np.array([f"p{i:03d}" for i in range(n)], dtype=object)
    sig = rng.normal(size=(n, 5))
    noise = rng.normal(size=(n, 5))
    write_table(CaseTable(ids, sig, [f"s{j}" for j in range(5)]), str(tmp_path / "signal.h5"))
    write_table(CaseTable(ids[5:], noise[5:], [f"n{j}" for j in range(5)]), str(tmp_path / "noise.h5"))
    man = pd.DataFrame({"case_id": ids, "label": np.where(sig[:, 0] > 0, "yes", "no"),
                        "size": 3 * sig[:, 0] + 0.2 * rng.normal(size=n)})
    man.loc[0, "label"] = ""
    man.to_csv(tmp_path / "cohort.csv", index=False)
    return tmp_path


def test_probe_default_run(cli, cohort):
    out = cohort / "probe.csv"
    r = cli("probe", cohort / "signal.h5", cohort / "noise.h5", "--manifest", cohort / "cohort.csv",
            "--target", "label", "-o", out, "--folds", "3", "--trees", "20")
    assert r.exit_code == 0, r
    assert "75 cases in all 2 table(s)" in r.stderr
    df = pd.read_csv(out).set_index(["table", "model"])
    assert set(df.index) == {("signal", "logistic"), ("signal", "rf"), ("noise", "logistic"), ("noise", "rf")}
    assert df.loc[("signal", "logistic"), "auc_mean"] > 0.9
    for m in ("accuracy", "balanced_accuracy", "auc"):
        assert f"{m}_mean" in df.columns and f"{m}_sd" in df.columns


def test_probe_regress_stdout_names_and_determinism(cli, cohort):
    args = ("probe", cohort / "signal.h5", cohort / "noise.h5", "--manifest", cohort / "cohort.csv",
            "--target", "size", "--task", "regress", "-o", "-", "--folds", "4", "--trees", "15",
            "--names", "radiomics,pre", "--seed", "5")
    a, b = cli(*args), cli(*args)
    assert a.exit_code == 0, a
    assert a.stdout == b.stdout
    df = pd.read_csv(io.StringIO(a.stdout)).set_index(["table", "model"])
    assert df.loc[("radiomics", "ridge"), "r2_mean"] > 0.9
    assert df.loc[("pre", "ridge"), "r2_mean"] < 0.2


def test_probe_stdin_and_spaces(cli, cohort, spaced_tmp):
    (spaced_tmp / "my cohort.csv").write_bytes((cohort / "cohort.csv").read_bytes())
    r = cli("probe", "-", "--manifest", spaced_tmp / "my cohort.csv", "--target", "size", "--task", "regress",
            "-o", spaced_tmp / "out put.csv", "--models", "ridge", "--folds", "3",
            input=(cohort / "signal.h5").read_bytes())
    assert r.exit_code == 0, r
    df = pd.read_csv(spaced_tmp / "out put.csv")
    assert list(df.table) == ["stdin"] and list(df.model) == ["ridge"]


def test_probe_bad_inputs(cli, cohort):
    base = ("--manifest", cohort / "cohort.csv", "-o", cohort / "x.csv")
    r = cli("probe", cohort / "signal.h5", *base, "--target", "nope")
    assert r.exit_code == 2 and "unknown target column(s) nope" in r.stderr
    r = cli("probe", cohort / "signal.h5", *base, "--target", "label", "--task", "regress")
    assert r.exit_code == 1 and "not numeric for case" in r.stderr
    r = cli("probe", cohort / "signal.h5", cohort / "noise.h5", *base, "--target", "size", "--names", "a")
    assert r.exit_code == 2 and "--names gives 1 name(s) for 2 table(s)" in r.stderr
    r = cli("probe", cohort / "signal.h5", *base, "--target", "label", "--models", "ridge")  # regress-only
    assert r.exit_code == 2
    other = CaseTable(np.array(["q1", "q2"], dtype=object), np.ones((2, 2)), ["a", "b"])
    write_table(other, str(cohort / "other.h5"))
    r = cli("probe", cohort / "other.h5", *base, "--target", "size")
    assert r.exit_code == 1 and "no case is in every feature table" in r.stderr
    assert not (cohort / "x.csv").exists()


def test_probe_is_split_aware_by_default(cli, cohort):
    """train-test: fitted on the manifest's train cases only, scored on its test cases --
    equal to a ridge fitted by hand on train and scored on test; cv-test stays in test."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from radlens_cli.io.tables import read_table
    from radlens_cli.lens.probe import RIDGE_ALPHAS

    man = pd.read_csv(cohort / "cohort.csv")
    man["split"] = np.array(["train", "train", "test", "val"] * 20)
    man.to_csv(cohort / "split.csv", index=False)
    base = ("--manifest", cohort / "split.csv", "--target", "size", "--task", "regress",
            "--models", "ridge", "-o", "-")
    r = cli("probe", cohort / "signal.h5", *base)
    assert r.exit_code == 0, r
    row = pd.read_csv(io.StringIO(r.stdout)).iloc[0]
    assert row.protocol == "train-test" and row.folds == 1
    assert (row.n_train, row.n_test) == (40, 20) and np.isnan(row.r2_sd)
    t = read_table(str(cohort / "signal.h5"))
    tr, te = (man.split == "train").to_numpy(), (man.split == "test").to_numpy()
    m = make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS)).fit(t.values[tr], man["size"][tr])
    assert row.r2_mean == pytest.approx(r2_score(man["size"][te], m.predict(t.values[te])), rel=1e-9)
    r = cli("probe", cohort / "signal.h5", *base, "--protocol", "cv-test", "--folds", "4")
    row = pd.read_csv(io.StringIO(r.stdout)).iloc[0]
    assert row.protocol == "cv-test" and row.folds == 4 and row.n_cases == 20
    r = cli("probe", cohort / "signal.h5", *base, "--protocol", "nope")
    assert r.exit_code == 2 and "--protocol must be one of" in r.stderr


def test_probe_warns_when_the_encoder_was_fine_tuned_on_the_target(cli, cohort):
    import json

    import torch

    ck = cohort / "ft.pt"
    torch.save({"radlens_checkpoint": 1, "finetune": {"task": "regress", "target": "size",
                                                      "params": {"freeze_encoder": False}}}, ck)
    t = read_table_h5(cohort / "signal.h5")
    attrs = {"params": json.dumps({"encoder": str(ck), "encoder_source": "radlens"})}
    write_table(t, str(cohort / "emb_ft.h5"), attrs=attrs)
    base = ("--manifest", cohort / "cohort.csv", "--target", "size", "--task", "regress",
            "--models", "ridge", "-o", "-")
    r = cli("probe", cohort / "emb_ft.h5", *base, "--protocol", "cv-all", "--folds", "3")
    assert r.exit_code == 0, r
    assert "encoder was fine-tuned on size (regress)" in r.stderr and "--protocol train-test" in r.stderr
    r = cli("probe", cohort / "emb_ft.h5", *base, "--target", "label", "--task", "classify",
            "--models", "logistic", "--protocol", "cv-all", "--folds", "3")
    assert r.exit_code == 0 and "fine-tuned" not in r.stderr
    torch.save({"radlens_checkpoint": 1, "finetune": {"task": "regress", "target": "size",
                                                      "params": {"freeze_encoder": True}}}, ck)
    r = cli("probe", cohort / "emb_ft.h5", *base, "--protocol", "cv-all", "--folds", "3")
    assert r.exit_code == 0 and "fine-tuned" not in r.stderr     # a frozen encoder saw no labels


def read_table_h5(path):
    from radlens_cli.io.tables import read_table

    return read_table(str(path))
