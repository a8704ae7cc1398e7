"""`radlens probe` through the real app."""

import io

import numpy as np
import pandas as pd
import pytest

from radlens_cli.io.tables import CaseTable, write_table


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
    # issue 25: the default protocol has no folds; --folds was silently ignored
    assert "--folds 3 is ignored: --protocol train-test" in r.stderr
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


class _Runs:
    """A pickled object whose unpickling runs code: it creates the file `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_probe_reads_a_named_checkpoint_weights_only(cli, cohort):
    """An embedding table's params name a checkpoint; probe looks into it for the fine-tuning
    target without unpickling it fully (no code in the file runs; it only gives no warning)."""
    import json

    import torch

    marker = cohort / "code ran"
    ck = cohort / "evil.pt"
    torch.save({"radlens_checkpoint": 1, "x": _Runs(str(marker)),
                "finetune": {"task": "regress", "target": "size", "params": {}}}, ck)
    write_table(read_table_h5(cohort / "signal.h5"), str(cohort / "emb_evil.h5"),
                attrs={"params": json.dumps({"encoder": str(ck), "encoder_source": "radlens"})})
    r = cli("probe", cohort / "emb_evil.h5", "--manifest", cohort / "cohort.csv", "--target", "size",
            "--task", "regress", "--models", "ridge", "-o", "-", "--protocol", "cv-all", "--folds", "3")
    assert r.exit_code == 0, r
    assert not marker.exists() and "fine-tuned" not in r.stderr


def test_folds_below_two_named_by_the_option_the_library_by_value(cli, cohort):
    from radlens_cli.errors import RadlensError
    from radlens_cli.lens import probe as lp

    r = cli("probe", cohort / "signal.h5", "--manifest", cohort / "cohort.csv", "--target", "size",
            "--task", "regress", "--models", "ridge", "-o", "-", "--protocol", "cv-all", "--folds", "1")
    assert r.exit_code == 1 and "--folds 1: need at least 2" in r.stderr
    import pytest

    with pytest.raises(RadlensError, match="^1 fold\\(s\\): cross-validation needs at least 2$"):
        lp.make_folds(np.arange(10.0), "regress", folds=1)


def test_help_and_report_say_what_the_default_protocol_measures(cli):
    """Issue 25: `probe --help` and the report said "cross-validated ... mean ± sd over folds"
    while the default protocol is one train/test split."""
    from radlens_cli.report.html import probe_intro

    text = " ".join(cli("probe", "--help").stdout.split())
    assert "one split, no folds, no sd" in text
    assert "--protocol cv-test --folds 4 -o -" in text           # the example reads as one command
    intro = probe_intro(pd.DataFrame({"protocol": ["train-test"]}))
    assert "train cases and scored on its test cases" in intro and "ross-validated" not in intro
    assert "ross-validated" in probe_intro(pd.DataFrame({"protocol": ["cv-all"]}))
