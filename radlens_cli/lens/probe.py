"""Rad4XCNN's accuracy side: shallow models on each feature table, split-aware.

Protocols (`split_folds`): train-test (default; fit on the `train` split, score on
`test`), cv-test (cross-validation within the `test` cases only) and cv-all
(cross-validation over every case, ignoring the split -- the old behaviour; for an
encoder fine-tuned on the probed target most cases of each fold were seen with their
labels during fine-tuning, which inflates the fine-tuned table's score).
Every table is scored with the same folds (StratifiedKFold for classification, KFold for
regression, shuffled with one seed), so differences between tables are not differences
between splits. Standardisation is fitted inside each training fold (a scikit-learn
Pipeline), never on the held-out cases.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from radlens_cli.errors import EXIT_DATA, ParameterError, ParameterMessage, RadlensError, check_choice

TASKS = ("classify", "regress")
MODELS = {"classify": ("logistic", "rf"), "regress": ("ridge", "rf")}  # the defaults
# Rad4XCNN's shallow models were RF, XGB and SVM: svm (RBF SVM) and gb (scikit-learn's
# histogram gradient boosting, an XGBoost-like learner) are there on request.
EXTRA_MODELS = ("svm", "gb")
METRICS = {"classify": ("accuracy", "balanced_accuracy", "auc"), "regress": ("mse", "r2")}
RIDGE_ALPHAS = np.logspace(-3, 4, 15)


def make_folds(y, task: str, folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs shared by every table."""
    from sklearn.model_selection import KFold, StratifiedKFold

    y = np.asarray(y)
    n = len(y)
    if folds < 2:
        raise RadlensError(f"{folds} fold(s): cross-validation needs at least 2")
    if n < folds:
        raise RadlensError(f"{n} case(s) for {folds} folds; need at least one case per fold")
    if task == "classify":
        classes, counts = np.unique(y, return_counts=True)
        if len(classes) < 2:
            raise RadlensError(f"the target has one class ({classes[0]!s}); classification needs two")
        if counts.min() < folds:
            small = ", ".join(f"{c!s} ({k})" for c, k in zip(classes, counts) if k < folds)
            raise RadlensError(f"class(es) with fewer cases than the {folds} folds: {small}")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros((n, 1)), y))
    splitter = KFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros((n, 1))))


PROTOCOLS = ("train-test", "cv-test", "cv-all")


def split_folds(y, split, task: str, protocol: str = "train-test", folds: int = 5,
                seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs over the cases of y for a protocol (see the module doc)."""
    split = np.asarray(split, dtype=object)
    if protocol == "cv-all":
        return make_folds(y, task, folds, seed)
    te = np.flatnonzero(split == "test")
    if protocol == "cv-test":
        if len(te) == 0:
            raise RadlensError("no `test` cases to cross-validate within")
        return [(te[a], te[b]) for a, b in make_folds(np.asarray(y)[te], task, folds, seed)]
    if protocol != "train-test":
        raise RadlensError(f"unknown protocol {protocol!r} (use {', '.join(PROTOCOLS)})")
    tr = np.flatnonzero(split == "train")
    if len(tr) == 0 or len(te) == 0:
        raise RadlensError(f"train-test needs `train` and `test` cases (have {len(tr)} and {len(te)})")
    if task == "classify":
        missing = sorted(set(map(str, np.asarray(y)[te])) - set(map(str, np.asarray(y)[tr])))
        if len(np.unique(np.asarray(y)[tr])) < 2:
            raise RadlensError("the `train` cases hold one class; classification needs two")
        if missing:
            raise RadlensError(f"class(es) {', '.join(missing)} occur in `test` but not in `train`")
    return [(tr, te)]


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
    if name == "svm":
        from sklearn.svm import SVC, SVR

        if task == "classify":  # AUC from decision_function scores (no Platt scaling needed)
            return make_pipeline(StandardScaler(), SVC())
        return make_pipeline(StandardScaler(), SVR())
    if name == "gb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if task == "classify" else HistGradientBoostingRegressor
        return cls(random_state=seed)
    raise RadlensError(f"model {name!r} does not fit task {task} "
                       f"(use {', '.join(MODELS[task] + EXTRA_MODELS)})")


def _scores(task: str, y_true, pred, score=None, classes=None) -> dict[str, float]:
    """Fold metrics. score: predict_proba or decision_function output (columns = classes)."""
    from sklearn import metrics

    if task == "regress":
        return {"mse": float(metrics.mean_squared_error(y_true, pred)),
                "r2": float(metrics.r2_score(y_true, pred))}
    with warnings.catch_warnings():   # a fold without some class: the mean recall over the classes it has
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        balanced = float(metrics.balanced_accuracy_score(y_true, pred))
    out = {"accuracy": float(metrics.accuracy_score(y_true, pred)), "balanced_accuracy": balanced}
    out["auc"] = auc_ovr(y_true, score, classes)
    return out


def auc_ovr(y_true, score, classes) -> float:
    """Binary ROC AUC, or the macro mean of one-vs-rest AUCs over classes (> 2 classes).

    Works on probabilities or decision scores alike (the same value as scikit-learn's
    roc_auc_score(multi_class="ovr", average="macro") on probabilities).
    """
    from sklearn.metrics import roc_auc_score

    y_true = np.asarray(y_true)
    score = np.asarray(score, dtype=np.float64)
    if len(classes) == 2:
        s = score if score.ndim == 1 else score[:, 1]
        pos = y_true == classes[1]
        return float(roc_auc_score(pos, s)) if 0 < pos.sum() < len(pos) else float("nan")
    aucs = []
    for c, cls in enumerate(classes):
        pos = y_true == cls
        if 0 < pos.sum() < len(pos):
            aucs.append(roc_auc_score(pos, score[:, c]))
    return float(np.mean(aucs)) if aucs else float("nan")


def cross_validate(x, y, task: str, folds_idx, models=None, seed: int = 0, jobs: int = 1,
                   trees: int = 200) -> dict[str, dict[str, np.ndarray]]:
    """Per model, per metric: the score on each fold (array of len(folds_idx))."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    models = models or MODELS[task]
    out = {}
    # --jobs bounds every thread pool (BLAS, OpenMP in gradient boosting) too
    with threadpool_limits(limits=jobs):
        for name in models:
            out[name] = _cross_validate_one(name, x, y, task, folds_idx, seed, jobs, trees)
    return out


def _cross_validate_one(name, x, y, task, folds_idx, seed, jobs, trees) -> dict[str, np.ndarray]:
    per = {m: np.empty(len(folds_idx)) for m in METRICS[task]}
    for f, (tr, te) in enumerate(folds_idx):
        model = make_model(name, task, seed, jobs, trees)
        model.fit(x[tr], y[tr])
        pred = model.predict(x[te])
        score = classes = None
        if task == "classify":
            classes = model.classes_
            score = (model.predict_proba(x[te]) if hasattr(model, "predict_proba")
                     else model.decision_function(x[te]))
        for m, v in _scores(task, y[te], pred, score, classes).items():
            per[m][f] = v
    return per


def probe(tables: dict[str, np.ndarray], y, task: str, folds: int = 5, seed: int = 0, models=None,
          jobs: int = 1, trees: int = 200, split=None, protocol: str = "cv-all"):
    """One row per (table, model): mean and sd (ddof=1) over the shared folds of each metric.

    tables: name -> (n, p) values, rows the same cases as y; split: the cases' splits
    (needed by the train-test and cv-test protocols). With train-test there is one fold:
    the sd columns are empty and `folds` is 1.
    """
    import pandas as pd

    if task not in TASKS:
        raise RadlensError(f"unknown task {task!r} (use {' or '.join(TASKS)})")
    y = np.asarray(y)
    if protocol != "cv-all" and split is None:
        raise RadlensError(f"protocol {protocol} needs the cases' split")
    folds_idx = split_folds(y, split, task, protocol, folds, seed)
    rows = []
    for tname, x in tables.items():
        res = cross_validate(x, y, task, folds_idx, models, seed, jobs, trees)
        for mname, per in res.items():
            used = np.unique(np.concatenate([np.r_[a, b] for a, b in folds_idx]))
            row = {"table": tname, "model": mname, "task": task, "protocol": protocol,
                   "n_cases": len(used), "n_train": len(folds_idx[0][0]),
                   "n_test": int(sum(len(b) for _, b in folds_idx)),
                   "n_features": int(np.asarray(x).shape[1]), "folds": len(folds_idx), "seed": seed}
            for m, v in per.items():
                row[f"{m}_mean"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                row[f"{m}_sd"] = float(np.nanstd(v, ddof=1)) if np.isfinite(v).sum() > 1 else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class ProbeOptions:
    """How `probe_tables` scores: checked when made (before any table is read)."""

    task: str = "classify"
    folds: int = 5
    seed: int = 0
    models: list[str] = field(default_factory=list)   # empty: the task's defaults (MODELS)
    trees: int = 200
    jobs: int = 1
    protocol: str = "train-test"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ParameterError(f"{{task}} {self.task}: use {' or '.join(TASKS)}", "task")
        if self.protocol in ("cv-test", "cv-all") and self.folds < 2:
            raise ParameterError(f"{{folds}} {self.folds}: need at least 2", "folds", exit_code=EXIT_DATA)
        self.models = list(self.models) or list(MODELS[self.task])
        for m in self.models:
            if m not in MODELS[self.task] + EXTRA_MODELS:
                raise ParameterError(f"{{models}} {m}: for {{task}} {self.task} use "
                                     f"{', '.join(MODELS[self.task] + EXTRA_MODELS)}", "models", "task")
        check_choice(self.protocol, PROTOCOLS, "protocol")
        if self.trees < 1:
            raise ParameterError("{trees} must be at least 1", "trees")


def probe_tables(tables: dict, targets: dict, split_of: dict, target: str, opts: ProbeOptions,
                 fine_tuned_on: dict | None = None, warn=None, info=None, sources: list[str] | None = None,
                 targets_from: str = ""):
    """`radlens probe` on in-memory case tables: every table (name -> CaseTable) scored
    with the same folds on the cases that every table holds and that have a target
    (targets: case_id -> value; split_of: case_id -> split). Columns with a non-finite
    value on those cases are dropped (warned). fine_tuned_on: name -> the checkpoint's
    recorded (task, target) for tables embedded by a fine-tuned encoder: a warning when
    it was fine-tuned on this target. sources, targets_from: how messages name the
    tables and where the targets came from. Returns probe()'s DataFrame."""
    warn, info = warn or (lambda m: None), info or (lambda m: None)
    common, n_union = set(targets), set()
    for t in tables.values():
        common &= set(t.case_id)
        n_union |= set(t.case_id)
    cases = sorted(common)  # sorted ids: the folds do not depend on row order
    if not cases:
        raise RadlensError(f"no case is in every feature table "
                           f"({', '.join(sources or [t.path for t in tables.values()])}) and has target {target}"
                           + (f" in {targets_from}" if targets_from else ""))
    info(f"probe: {len(cases)} cases in all {len(tables)} table(s) with target {target} "
         f"({len(n_union - common)} case(s) only in some tables or without a target)")
    for label, t in tables.items():
        ft = (fine_tuned_on or {}).get(label)
        if ft is not None and ft[1] == target:
            warn(ParameterMessage(
                f"{t.path}: its encoder was fine-tuned on {target} ({ft[0]}); "
                + ("cv-all lets it score cases it saw with their labels, inflating "
                   f"{label}'s accuracy; use {{protocol}}" if opts.protocol == "cv-all" else
                   "only `test` cases are scored, but make sure they were `test` for the fine-tuning too"),
                "protocol", plain={"protocol": "protocol='train-test'"}, flags={"protocol": "--protocol train-test"}))
    split = np.array([split_of.get(c, "") for c in cases], dtype=object)
    y = np.array([targets[c] for c in cases], dtype=np.float64 if opts.task == "regress" else object)
    if opts.task == "classify":
        y = np.array(y.tolist())  # uniform dtype (ints or strings) for scikit-learn
    mats = {}
    for label, t in tables.items():
        pos = {c: i for i, c in enumerate(t.case_id)}
        x = t.values[[pos[c] for c in cases]]
        bad = ~np.isfinite(x).all(axis=0)
        if bad.any():
            shown = [c for c, b in zip(t.columns, bad) if b]
            more = f" (+{len(shown) - 3} more)" if len(shown) > 3 else ""
            warn(f"{t.path}: dropped {len(shown)} column(s) with non-finite values: {', '.join(shown[:3])}{more}")
            x = x[:, ~bad]
        if x.shape[1] == 0:
            raise RadlensError(f"{t.path}: no column with finite values on the shared cases")
        mats[label] = x
    return probe(mats, y, opts.task, folds=opts.folds, seed=opts.seed, models=opts.models, jobs=opts.jobs,
                 trees=opts.trees, split=split, protocol=opts.protocol)
