"""Shallow-model probes: determinism for a seed, shared folds, and signal vs noise."""

import numpy as np
import pandas as pd
import pytest

from radlens_cli.lens import probe as lp


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    n = 120
    signal = rng.normal(size=(n, 8))
    noise = rng.normal(size=(n, 8))
    y_reg = 2.0 * signal[:, 2] + 0.3 * rng.normal(size=n)
    y_cls = np.where(signal[:, 2] > 0, "malignant", "benign")
    return {"signal": signal, "noise": noise}, y_reg, y_cls


def test_regression_detects_signal_and_not_noise(data):
    tables, y, _ = data
    df = lp.probe(tables, y, "regress", folds=4, seed=1, trees=30).set_index(["table", "model"])
    assert df.loc[("signal", "ridge"), "r2_mean"] > 0.9
    assert df.loc[("signal", "rf"), "r2_mean"] > 0.5
    assert df.loc[("noise", "ridge"), "r2_mean"] < 0.1
    assert df.loc[("noise", "rf"), "r2_mean"] < 0.1
    assert (df["n_cases"] == 120).all() and (df["folds"] == 4).all()


def test_classification_detects_signal(data):
    tables, _, y = data
    df = lp.probe(tables, y, "classify", folds=4, seed=1, trees=30).set_index(["table", "model"])
    assert df.loc[("signal", "logistic"), "auc_mean"] > 0.9
    assert df.loc[("signal", "logistic"), "balanced_accuracy_mean"] > 0.8
    assert abs(df.loc[("noise", "logistic"), "auc_mean"] - 0.5) < 0.2


def test_same_seed_same_output(data):
    tables, y, _ = data
    a = lp.probe(tables, y, "regress", folds=3, seed=7, trees=20)
    b = lp.probe(tables, y, "regress", folds=3, seed=7, trees=20)
    pd.testing.assert_frame_equal(a, b)
    c = lp.probe(tables, y, "regress", folds=3, seed=8, trees=20)
    assert not a.equals(c)


def test_folds_shared_and_stratified(data):
    _, _, y = data
    f1 = lp.make_folds(y, "classify", 4, seed=3)
    f2 = lp.make_folds(y, "classify", 4, seed=3)
    for (a, b), (c, d) in zip(f1, f2):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    for _, te in f1:
        assert abs((y[te] == "malignant").mean() - (y == "malignant").mean()) < 0.1


def test_multiclass_auc_and_sd_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(90, 4))
    y = np.digitize(x[:, 0], [-0.5, 0.5])  # three classes
    folds = lp.make_folds(y, "classify", 3, seed=0)
    per = lp.cross_validate(x, y, "classify", folds, ["logistic"])["logistic"]
    df = lp.probe({"t": x}, y, "classify", folds=3, seed=0, models=["logistic"])
    assert df.loc[0, "auc_mean"] == pytest.approx(per["auc"].mean())
    assert df.loc[0, "auc_sd"] == pytest.approx(per["auc"].std(ddof=1))
    assert df.loc[0, "auc_mean"] > 0.8


def test_auc_ovr_equals_sklearn_on_probabilities():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    y = np.array(list("abcd") * 10)
    proba = rng.dirichlet(np.ones(4), size=40)
    assert lp.auc_ovr(y, proba, np.array(list("abcd"))) == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro"), rel=1e-12)
    yb = y[:20] == "a"
    assert lp.auc_ovr(yb, proba[:20, :2], np.array([False, True])) == pytest.approx(
        roc_auc_score(yb, proba[:20, 1]), rel=1e-12)


def test_small_class_is_an_error():
    y = np.array(["a"] * 10 + ["b"] * 2)
    with pytest.raises(lp.RadlensError, match="fewer cases than the 5 folds: b \\(2\\)"):
        lp.make_folds(y, "classify", 5)


@pytest.mark.parametrize("task", ["classify", "regress"])
def test_svm_and_gradient_boosting_on_request(data, task):
    tables, y_reg, y_cls = data
    y = y_cls if task == "classify" else y_reg
    small = {"signal": tables["signal"][:60]}
    a = lp.probe(small, y[:60], task, folds=3, seed=2, models=["svm", "gb"])
    b = lp.probe(small, y[:60], task, folds=3, seed=2, models=["svm", "gb"])
    pd.testing.assert_frame_equal(a, b)
    assert list(a.model) == ["svm", "gb"]
    score = "auc_mean" if task == "classify" else "r2_mean"
    assert (a[score] > 0.5).all()


def test_split_folds_protocols():
    import numpy as np
    import pytest

    from radlens_cli.errors import RadlensError
    from radlens_cli.lens.probe import split_folds

    split = np.array(["train", "test", "val", "train", "test"] * 8, dtype=object)
    y = np.array([0, 1] * 20)
    (tr, te), = split_folds(y, split, "classify", "train-test")
    assert set(split[tr]) == {"train"} and set(split[te]) == {"test"} and len(tr) == 16
    folds = split_folds(y, split, "classify", "cv-test", folds=4, seed=0)
    used = np.concatenate([b for _, b in folds])
    assert sorted(used) == sorted(np.flatnonzero(split == "test"))
    assert all(set(split[a]) == {"test"} for a, _ in folds)
    assert len(split_folds(y, split, "classify", "cv-all", folds=5)) == 5
    y_bad = np.where(split == "test", 2, 0)                    # class 2 only in test
    with pytest.raises(RadlensError, match="class"):
        split_folds(y_bad, split, "classify", "train-test")


def test_balanced_accuracy_of_a_fold_without_a_class_is_quiet_and_the_mean_recall_it_can_have():
    import warnings

    from radlens_cli.lens.probe import _scores

    y_true = np.array([0, 0, 0, 1, 1])          # class 2 is predicted but absent from the fold
    pred = np.array([0, 2, 0, 1, 2])
    score = np.eye(3)[pred]
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # the example's probe printed sklearn's warning
        out = _scores("classify", y_true, pred, score, np.array([0, 1, 2]))
    recalls = [np.mean(pred[y_true == c] == c) for c in (0, 1)]
    assert out["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert out["accuracy"] == pytest.approx(3 / 5)
