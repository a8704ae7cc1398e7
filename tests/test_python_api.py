"""docs/python.md's example runs as written and gives the CLI's numbers on the same inputs."""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from radlens_cli.io.tables import read_table, write_table
from tests.encoders.conftest import atto3, cohort  # noqa: F401 (fixtures)
from tests.planted import planted_cohort

DOC = Path(__file__).resolve().parents[1] / "docs" / "python.md"


def _cli(*args):
    from radlens_cli.main import app

    r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, f"{args}: {r.stderr}"


def test_python_example_runs_and_matches_the_cli(tmp_path, monkeypatch, capsys):
    P = planted_cohort(n=300, n_train=200, n_val=30, d=48, n_noise=10)
    for name, t in (("emb_pre", P.emb_pre), ("emb_ft", P.emb_ft), ("radiomics", P.rad)):
        write_table(t, str(tmp_path / f"{name}.h5"))
    monkeypatch.chdir(tmp_path)
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(code) == 2  # the lens's example, then the cohorts' (test below)
    ns = {}
    exec(compile(code[0], str(DOC), "exec"), ns)
    assert "largest gains" in capsys.readouterr().out
    delta = ns["delta"]

    for line in re.findall(r"^radlens .*$", DOC.read_text(), flags=re.M):
        if line.split()[1] in ("fit-share", "decode", "compare"):
            _cli(*line.split()[1:])
    cli = pd.read_csv(tmp_path / "delta.csv")
    assert list(delta.columns) == list(cli.columns)
    assert len(delta) == len(cli) == len(P.rad.columns)
    for col in cli.columns:
        if cli[col].dtype.kind in "fi":
            # DEC.h5 keeps per-case arrays in float32: p-values from them agree to ~1e-6
            np.testing.assert_allclose(delta[col].to_numpy(float), cli[col].to_numpy(float),
                                       rtol=1e-5, atol=1e-9, err_msg=col)
        else:
            assert (delta[col].astype(str) == cli[col].astype(str)).all(), col
    # the planted structure is what both read: gains are the columns fine-tuning encoded
    top = delta.sort_values("rank_gain").column[:len(P.up)]
    assert np.mean([c in P.up for c in top]) >= 0.8
    assert os.path.exists("share.h5")


def test_cohort_example_runs_and_matches_the_cli(cohort, atto3, tmp_path, monkeypatch, capsys):
    """docs/python.md's radiomics.extract_cohort / encoders.embed_cohort block gives the
    tables `radlens extract-radiomics` and `radlens embed` write from the same cohort."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(os.path.dirname(cohort), work)
    shutil.copy(atto3, work / "random.pt")
    monkeypatch.chdir(work)
    code = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)[1]
    ns = {}
    exec(compile(code, str(DOC), "exec"), ns)
    rad, emb = ns["rad"], ns["emb"]
    assert capsys.readouterr().out.strip() == f"{rad.table.values.shape} 0"
    assert rad.table.n_cases == emb.table.n_cases == 4 and rad.failures == emb.failures == []
    assert emb.params["preprocessing"]["crop"] == [32, 32, 16] and emb.params["layer"] == "final"

    os.makedirs("cli")
    for line in re.findall(r"^radlens (?:extract-radiomics|embed) .*$", DOC.read_text(), flags=re.M):
        args = line.split()[1:]
        args[-1] = os.path.join("cli", args[-1])
        _cli(*args)
    for name, mine in (("radiomics.h5", rad.table), ("emb_pre.h5", emb.table)):
        theirs, written = read_table(os.path.join("cli", name)), read_table(name)
        for t in (theirs, written):
            assert list(t.case_id) == list(mine.case_id) and list(t.columns) == list(mine.columns), name
            assert list(t.split) == list(mine.split), name
            assert np.array_equal(t.values, mine.values), name
