"""Shared fixtures: a CLI runner over the real app, the bundled test data, small tables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("TQDM_DISABLE", "1")

# Commands register on the one app when their module is imported: importing main first keeps
# the pipeline order (which --help and the man pages show) whatever a test module imports.
import radlens_cli.main  # noqa: E402,F401
from radlens_cli.io.tables import write_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# PyRadiomics' brain1/brain2/breast1 cases and baseline values, in the repository (BSD licence)
PYRADIOMICS_CASES = REPO / "tests" / "data" / "pyradiomics"


class Result:
    def __init__(self, r):
        self.exit_code = r.exit_code
        self.stdout = r.stdout
        self.stderr = r.stderr
        self.stdout_bytes = r.stdout_bytes
        self.exception = r.exception

    def __repr__(self):
        return f"<exit {self.exit_code}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-3000:]}>"


@pytest.fixture
def cli():
    """cli(args..., input=bytes) -> Result with exit_code, stdout, stderr (separate streams)."""
    from radlens_cli.main import app

    runner = CliRunner()

    def invoke(*args, input=None):
        r = runner.invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
        return Result(r)

    return invoke


@pytest.fixture
def spaced_tmp(tmp_path):
    """A temporary folder whose path contains spaces."""
    p = tmp_path / "with spaces"
    p.mkdir()
    return p


def make_table(n=20, p=5, seed=0, split=True, prefix="case"):
    from radlens_cli.io.tables import CaseTable

    rng = np.random.default_rng(seed)
    ids = np.array([f"{prefix}{i:03d}" for i in range(n)], dtype=object)
    sp = np.array((["train"] * 14 + ["val"] * 2 + ["test"] * 4) * (n // 20 + 1), dtype=object)[:n] if split else None
    return CaseTable(case_id=ids, values=rng.normal(size=(n, p)), columns=[f"c{j}" for j in range(p)], split=sp)


# ------------------------------------------------------------------ the planted cohort and the one lens run

LENS_FIT = ("--hidden", "64", "--epochs", "3", "--seed", "0", "--device", "cpu", "--method", "calibrated-0.2")


@pytest.fixture(scope="session")
def planted():
    """The planted cohort (tests/planted.py: planted_cohort())."""
    from tests.planted import planted_cohort

    return planted_cohort()


@pytest.fixture
def planted_files(planted, tmp_path):
    paths = {}
    for name, t in (("emb_pre", planted.emb_pre), ("emb_ft", planted.emb_ft), ("rad", planted.rad)):
        paths[name] = tmp_path / f"{name}.h5"
        write_table(t, str(paths[name]))
    return paths


@pytest.fixture(scope="session")
def lens_run(planted, tmp_path_factory):
    """The planted cohort through fit-share (LENS_FIT: 0.2's calibrated lens; tests/lens/
    test_symmetric.py runs the default) and decode (pre, ft), once per session: (folder, Planted)
    with emb_pre.h5, emb_ft.h5, rad.h5, share.h5, dec_pre.h5, dec_ft.h5, for every test that
    needs a lens run (the lens commands' tests, the pipeline tests, stability's)."""
    from radlens_cli.main import app

    d = tmp_path_factory.mktemp("lens run")
    for name, t in (("emb_pre", planted.emb_pre), ("emb_ft", planted.emb_ft), ("rad", planted.rad)):
        write_table(t, str(d / f"{name}.h5"))
    for args in (["fit-share", d / "emb_pre.h5", d / "rad.h5", "-o", d / "share.h5", *LENS_FIT],
                 ["decode", d / "share.h5", d / "emb_pre.h5", d / "rad.h5", "-o", d / "dec_pre.h5"],
                 ["decode", d / "share.h5", d / "emb_ft.h5", d / "rad.h5", "-o", d / "dec_ft.h5"]):
        r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    return d, planted
