"""`radlens probe`: cross-validated shallow models on feature tables with shared folds.

Library: lens/probe.py (split-aware protocols, shared folds).
"""

from __future__ import annotations

import os
from typing import List, Optional

import numpy as np
import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, jobs_option, output_option, seed_option
from radlens_cli.encoders.training.finetuned import finetuned_target
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.manifest import read_manifest
from radlens_cli.io.tables import read_table
from radlens_cli.lens import probe as lp
from radlens_cli.names import parse_list


def _targets(manifest, column: str, task: str) -> dict:
    """case_id -> target for the cases whose target cell is filled in."""
    manifest.require_columns([column], "target")
    raw = manifest.frame[column].astype(str).str.strip()
    ids = manifest.case_ids
    has = (raw != "").to_numpy() & ~raw.str.lower().isin(["nan", "na"]).to_numpy()
    vals = raw.to_numpy(dtype=object)
    import pandas as pd

    num = pd.to_numeric(raw.where(has), errors="coerce").to_numpy(dtype=np.float64)
    if task == "regress":
        bad = has & ~np.isfinite(num)
        if bad.any():
            i = int(np.argmax(bad))
            raise RadlensError(f"{manifest.path}: target {column} is not numeric for case {ids[i]} "
                               f"({vals[i]!r}); use --task classify for labels")
        return {c: float(v) for c, v, h in zip(ids, num, has) if h}
    if np.isfinite(num[has]).all():
        # numeric labels: 1 and 1.0 are one class
        lab = [int(v) if float(v).is_integer() else float(v) for v in num[has]]
        return dict(zip(ids[has], lab))
    return dict(zip(ids[has], vals[has]))


def probe(features: list[str], manifest_path: str, target: str, output: str, task: str = "classify",
          folds: int = 5, seed: int = 0, names: str | None = None, models: str | None = None,
          trees: int = 200, jobs: int = 1, force: bool = False, protocol: str = "train-test"):
    """Score every feature table with the same folds; write one row per (table, model)."""
    if task not in lp.TASKS:
        raise UsageError(f"--task {task}: use {' or '.join(lp.TASKS)}")
    if protocol in ("cv-test", "cv-all") and folds < 2:  # the library says "fold(s)"; name the option here
        raise RadlensError(f"--folds {folds}: need at least 2")
    if not features:
        raise UsageError("give at least one feature table")
    if sum(f == "-" for f in features) > 1:
        raise UsageError("only one feature table can be `-` (stdin)")
    labels = parse_list(names, "names") if names else [
        "stdin" if f == "-" else os.path.splitext(os.path.basename(f))[0] for f in features]
    if len(labels) != len(features):
        raise UsageError(f"--names gives {len(labels)} name(s) for {len(features)} table(s)")
    if len(set(labels)) != len(labels):
        raise UsageError(f"table names repeat ({', '.join(labels)}); give distinct --names")
    model_list = parse_list(models, "models") if models else list(lp.MODELS[task])
    for m in model_list:
        if m not in lp.MODELS[task] + lp.EXTRA_MODELS:
            raise UsageError(f"--models {m}: for --task {task} use {', '.join(lp.MODELS[task] + lp.EXTRA_MODELS)}")
    if protocol not in lp.PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(lp.PROTOCOLS)}, not {protocol!r}")
    if trees < 1:
        raise UsageError("--trees must be at least 1")
    check_output(output, force, suffix=".csv")

    manifest = read_manifest(manifest_path)
    y_of = _targets(manifest, target, task)
    tables = [read_table(f, "feature table") for f in features]
    common = set(y_of)
    n_union = set()
    for t in tables:
        common &= set(t.case_id)
        n_union |= set(t.case_id)
    cases = sorted(common)  # sorted ids: the folds do not depend on row order
    if not cases:
        raise RadlensError(f"no case is in every feature table ({', '.join(features)}) and has target "
                           f"{target} in {manifest_path}")
    log.info(f"probe: {len(cases)} cases in all {len(tables)} table(s) with target {target} "
             f"({len(n_union - common)} case(s) only in some tables or without a target)")
    for label, t in zip(labels, tables):
        ft = finetuned_target(t.attrs)
        if ft is not None and ft[1] == target:
            log.warn(f"{t.path}: its encoder was fine-tuned on {target} ({ft[0]}); "
                     + ("cv-all lets it score cases it saw with their labels, inflating "
                        f"{label}'s accuracy; use --protocol train-test"
                        if protocol == "cv-all" else
                        f"only `test` cases are scored, but make sure they were `test` for "
                        f"the fine-tuning too"))
    split_of = dict(zip(manifest.case_ids, manifest.split))
    split = np.array([split_of.get(c, "") for c in cases], dtype=object)
    y = np.array([y_of[c] for c in cases], dtype=np.float64 if task == "regress" else object)
    if task == "classify":
        y = np.array(y.tolist())  # uniform dtype (ints or strings) for scikit-learn
    mats = {}
    for label, t in zip(labels, tables):
        pos = {c: i for i, c in enumerate(t.case_id)}
        x = t.values[[pos[c] for c in cases]]
        bad = ~np.isfinite(x).all(axis=0)
        if bad.any():
            shown = [c for c, b in zip(t.columns, bad) if b]
            more = f" (+{len(shown) - 3} more)" if len(shown) > 3 else ""
            log.warn(f"{t.path}: dropped {len(shown)} column(s) with non-finite values: "
                     f"{', '.join(shown[:3])}{more}")
            x = x[:, ~bad]
        if x.shape[1] == 0:
            raise RadlensError(f"{t.path}: no column with finite values on the shared cases")
        mats[label] = x
    df = lp.probe(mats, y, task, folds=folds, seed=seed, models=model_list, jobs=jobs, trees=trees,
                  split=split, protocol=protocol)
    provenance.declare("probe", inputs={f"features{i}": f for i, f in enumerate(features)} |
                       {"manifest": manifest_path},
                       params={"task": task, "target": target, "folds": folds, "seed": seed,
                               "protocol": protocol,
                               "models": model_list, "trees": trees, "names": labels},
                       history=provenance.merged_history(*(t.attrs for t in tables)))
    df["command"] = provenance.command_line()
    write_csv(df, output, force)
    return df


@command("probe")
def probe_cli(
    features: List[str] = typer.Argument(..., help="Feature tables (radiomics, embeddings; HDF5/CSV; "
                                                   "one may be `-`)."),
    manifest: str = typer.Option(..., "--manifest", help="Cohort manifest CSV holding the target column."),
    target: str = typer.Option(..., "--target", help="Manifest column to predict."),
    task: str = typer.Option("classify", "--task", help="classify (labels) or regress (numbers)."),
    output: str = output_option("Results CSV, one row per (table, model) (`-` for stdout)."),
    folds: int = typer.Option(None, "--folds", help="Cross-validation folds for --protocol cv-test and cv-all (default 5; the same for every table). train-test has no folds: --folds is then ignored, with a warning."),
    protocol: str = typer.Option("train-test", "--protocol", help="train-test (fit on the manifest's train split, score on test), cv-test (cross-validate within the test cases) or cv-all (every case, ignoring the split: leaks labels for an encoder fine-tuned on the target)."),
    names: Optional[str] = typer.Option(None, "--names",
                                        help="Comma-separated table names (default: file stems)."),
    models: Optional[str] = typer.Option(None, "--models",
                                         help="Comma-separated: logistic (classify) or ridge (regress), rf, svm, gb "
                                              "(default: the linear model and rf)."),
    trees: int = typer.Option(200, "--trees", help="Trees in the random forest."),
    seed: int = seed_option(),
    jobs: int = jobs_option(),
    force: bool = force_option(),
):
    """Shallow models on each feature table: accuracy kept?

    Answers "does the interpretable representation lose accuracy?". Split-aware by
    default: models are fitted on the manifest's `train` cases and scored on its `test`
    cases (--protocol train-test: one split, no folds, no sd); cv-test cross-validates
    within the test cases and cv-all over every case (the old behaviour), with --folds. Warns when a table's encoder was fine-tuned on
    the probed target (read from the radlens checkpoint its embeddings name). The same
    split or folds (StratifiedKFold for classify, KFold for regress, shuffled by --seed) score every
    table with a standardised linear model (logistic regression, or ridge with its
    penalty chosen inside the training fold) and a random forest; --models adds an RBF
    SVM (svm) or gradient boosting (gb), as in Rad4XCNN. Cases are those in
    every table with a target in the manifest (the count is logged).

    Writes one row per (table, model): the protocol, case counts, and mean and sd over
    folds (sd empty with train-test's single split) of accuracy, balanced accuracy and AUC
    (macro one-vs-rest for more than two classes), or MSE and R2.

    Examples:

    \b
      radlens probe radiomics.h5 emb_pre.h5 emb_ft.h5 --manifest cohort.csv --target pirads -o probe.csv
      radlens probe emb_ft.h5 --manifest cohort.csv --target volume_ml --task regress --protocol cv-test --folds 4 -o -
    """
    if folds is not None and protocol == "train-test":
        log.warn(f"--folds {folds} is ignored: --protocol train-test fits on the train cases and scores "
                 f"the test cases once (no folds); use --protocol cv-test or cv-all for folds")
    probe(features, manifest, target, output, task=task, folds=5 if folds is None else folds, seed=seed, names=names,
          models=models, trees=trees, jobs=jobs, force=force, protocol=protocol)
