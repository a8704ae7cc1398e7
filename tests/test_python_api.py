"""docs/python.md's example runs as written and gives the CLI's numbers on the same inputs."""

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from radlens_cli.io.tables import write_table
from tests.lens.conftest import planted_cohort

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
    assert len(code) == 1
    ns = {}
    exec(compile(code[0], str(DOC), "exec"), ns)
    assert "largest gains" in capsys.readouterr().out
    delta = ns["delta"]

    for line in re.findall(r"^radlens .*$", DOC.read_text(), flags=re.M):
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
