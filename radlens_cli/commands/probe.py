"""`radlens probe`: cross-validated shallow models on feature tables with shared folds.

Library: lens.probe_tables (lens/probe.py: split-aware protocols, shared folds).
"""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from radlens_cli import log, provenance
from radlens_cli.commands.app import command
from radlens_cli.commands.options import force_option, jobs_option, output_option, seed_option
from radlens_cli.encoders.training.finetuned import finetuned_target
from radlens_cli.errors import UsageError
from radlens_cli.io.files import check_output
from radlens_cli.io.formats import write_csv
from radlens_cli.io.manifest import read_manifest
from radlens_cli.io.tables import read_table
from radlens_cli.lens import probe as lp
from radlens_cli.names import parse_list


def probe(features: list[str], manifest_path: str, target: str, output: str, task: str = "classify",
          folds: int = 5, seed: int = 0, names: str | None = None, models: str | None = None,
          trees: int = 200, jobs: int = 1, force: bool = False, protocol: str = "train-test"):
    """Score every feature table with the same folds (lens.probe_tables); write one row per (table, model)."""
    opts = lp.ProbeOptions(task=task, folds=folds, seed=seed, models=parse_list(models, "models") if models else [],
                           trees=trees, jobs=jobs, protocol=protocol)
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
    check_output(output, force, suffix=".csv")
    manifest = read_manifest(manifest_path)
    y_of = manifest.target_values(target, task)
    tables = dict(zip(labels, (read_table(f, "feature table") for f in features)))
    df = lp.probe_tables(tables, y_of, dict(zip(manifest.case_ids, manifest.split)), target, opts,
                         fine_tuned_on={n: finetuned_target(t.attrs) for n, t in tables.items()},
                         warn=log.warn, info=log.info, sources=features, targets_from=manifest_path)
    provenance.declare("probe", inputs={f"features{i}": f for i, f in enumerate(features)} |
                       {"manifest": manifest_path},
                       params={"task": task, "target": target, "folds": folds, "seed": seed,
                               "protocol": protocol,
                               "models": opts.models, "trees": trees, "names": labels},
                       history=provenance.merged_history(*(t.attrs for t in tables.values())))
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
