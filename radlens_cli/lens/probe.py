"""Rad4XCNN's accuracy side: cross-validated shallow models on each feature table.

Every table is scored with the same folds (StratifiedKFold for classification, KFold for
regression, shuffled with one seed), so differences between tables are not differences
between splits. Standardisation is fitted inside each training fold (a scikit-learn
Pipeline), never on the held-out cases.
"""

from __future__ import annotations

import numpy as np

from radlens_cli.errors import RadlensError

TASKS = ("classify", "regress")
MODELS = {"classify": ("logistic", "rf"), "regress": ("ridge", "rf")}
METRICS = {"classify": ("accuracy", "balanced_accuracy", "auc"), "regress": ("mse", "r2")}
RIDGE_ALPHAS = np.logspace(-3, 4, 15)


def make_folds(y, task: str, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs shared by every table."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y)
    n = len(y)
    if folds < 2:
        raise RadlensError(f"--folds {folds}: need at least 2")
    if n < folds:
        raise RadlensError(f"{n} case(s) for {folds} folds; need at least one case per fold")
    if task == "classify":
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise RadlensError(f"the target has one class ({classes[0]!s}); classification needs two")
        if counts.min() < folds:
            small = ", ".join(f"{c!s} ({k})" for c, k in zip(classes, counts) if k < folds)
            raise RadlensError(f"class(es) with fewer cases than --folds {folds}: {small}")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros((n, 1)), y))
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((n, 1))))


def make_model(name: str, task: str, seed: int = 0, jobs: int = 1, trees: int = 200):
    """A fresh scikit-learn estimator; linear models standardise inside the pipeline."""
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "logistic" and task == "classify":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    if name == "ridge" and task == "regress":
        # alpha chosen by efficient leave-one-out on the training fold only
        return make_pipeline(StandardScaler(), RidgeCV(alphas=RIDGE_ALPHAS))
    if name == "rf":
        cls = RandomForestClassifier if task == "classify" else RandomForestRegressor
        return make_pipeline(StandardScaler(), cls(n_estimators=trees, random_state=seed, n_jobs=jobs))
    raise RadlensError(f"model {name!r} does not fit task {task} (use {', '.join(MODELS[task])})")


def _scores(task: str, y_true, pred, proba=None, classes=None) -> dict[str, float]:
    from sklearn import metrics

    if task == "regress":
        return {"mse": float(metrics.mean_squared_error(y_true, pred)),
                "r2": float(metrics.r2_score(y_true, pred))}
    out = {"accuracy": float(metrics.accuracy_score(y_true, pred)),
           "balanced_accuracy": float(metrics.balanced_accuracy_score(y_true, pred))}
    present = np.unique(y_true)
    if len(present) < 2:
        out["auc"] = float("nan")
    elif len(classes) == 2:
        out["auc"] = float(metrics.roc_auc_score(y_true == classes[1], proba[:, 1]))
    else:
        out["auc"] = float(metrics.roc_auc_score(y_true, proba, multi_class="ovr", average="macro",
                                                 labels=classes))
    return out


def cross_validate(x, y, task: str, folds_idx, models=None, seed: int = 0, jobs: int = 1,
                   trees: int = 200) -> dict[str, dict[str, np.ndarray]]:
    """Per model, per metric: the score on each fold (array of len(folds_idx))."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    models = models or MODELS[task]
    out = {}
    for name in models:
        per = {m: np.empty(len(folds_idx)) for m in METRICS[task]}
        for f, (tr, te) in enumerate(folds_idx):
            model = make_model(name, task, seed, jobs, trees)
            model.fit(x[tr], y[tr])
            pred = model.predict(x[te])
            proba = model.predict_proba(x[te]) if task == "classify" else None
            classes = model.classes_ if task == "classify" else None
            for m, v in _scores(task, y[te], pred, proba, classes).items():
                per[m][f] = v
        out[name] = per
    return out


def probe(tables: dict[str, np.ndarray], y, task: str, folds: int = 5, seed: int = 0, models=None,
          jobs: int = 1, trees: int = 200):
    """One row per (table, model): mean and sd (ddof=1) over the shared folds of each metric.

    tables: name -> (n, p) values, rows the same cases as y.
    """
    import pandas as pd

    if task not in TASKS:
        raise RadlensError(f"unknown task {task!r} (use {' or '.join(TASKS)})")
    y = np.asarray(y)
    folds_idx = make_folds(y, task, folds, seed)
    rows = []
    for tname, x in tables.items():
        res = cross_validate(x, y, task, folds_idx, models, seed, jobs, trees)
        for mname, per in res.items():
            row = {"table": tname, "model": mname, "task": task, "n_cases": len(y),
                   "n_features": int(np.asarray(x).shape[1]), "folds": folds, "seed": seed}
            for m, v in per.items():
                row[f"{m}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                row[f"{m}_sd"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)
