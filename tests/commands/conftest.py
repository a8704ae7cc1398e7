"""Fixtures for the per-command tests of correlate / cka / probe: small synthetic tables with planted structure."""

from __future__ import annotations

import numpy as np
import pytest

from radlens_cli.io.tables import CaseTable, write_table

RAD_COLUMNS = [f"{m}/{it}_{fam}_F{k}" for m in ("t2", "adc") for it in ("original", "wavelet-LLH")
               for fam in ("firstorder", "glcm") for k in range(2)]




def planted(n=60, d=8, seed=0, prefix="case"):
    """Embeddings (n, d) and radiomics (n, 16) where rad col 0 follows emb_0, col 5 follows -emb_3;
    emb_7 and rad col 9 are constant."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{prefix}{i:03d}" for i in range(n)], dtype=object)
    split = np.array((["train"] * 7 + ["val"] + ["test"] * 2) * (n // 10 + 1), dtype=object)[:n]
    x = rng.normal(size=(n, d))
    x[:, d - 1] = 2.5
    y = rng.normal(size=(n, len(RAD_COLUMNS)))
    y[:, 0] = 2 * x[:, 0] + 0.2 * rng.normal(size=n)
    y[:, 5] = -x[:, 3] + 0.2 * rng.normal(size=n)
    y[:, 9] = 1.0
    emb = CaseTable(ids, x, [f"emb_{j}" for j in range(d)], split)
    rad = CaseTable(ids, y, list(RAD_COLUMNS), split)
    return emb, rad


@pytest.fixture
def tables(tmp_path):
    """Paths (emb.h5, rad.h5) of a planted pair."""
    emb, rad = planted()
    write_table(emb, str(tmp_path / "emb.h5"))
    write_table(rad, str(tmp_path / "rad.h5"))
    return tmp_path / "emb.h5", tmp_path / "rad.h5"


@pytest.fixture(scope="session")
def lens_run(tmp_path_factory):
    """A small planted cohort through fit-share and decode (pre, ft), once per session, for the
    per-command tests of the lens commands (fit-share, decode, compare, stats, report)."""
    from typer.testing import CliRunner

    from radlens_cli.main import app
    from tests.lens.conftest import planted_cohort

    d = tmp_path_factory.mktemp("lens run")
    P = planted_cohort(n=240, n_train=168, n_val=24, d=32, n_noise=10)
    for name, t in (("emb_pre", P.emb_pre), ("emb_ft", P.emb_ft), ("rad", P.rad)):
        write_table(t, str(d / f"{name}.h5"))
    for args in (["fit-share", d / "emb_pre.h5", d / "rad.h5", "-o", d / "share.h5",
                  "--hidden", "16", "--epochs", "3", "--seed", "0", "--device", "cpu",
                  "--method", "calibrated-0.2"],   # 0.2's lens; tests/lens/test_symmetric.py the default
                 ["decode", d / "share.h5", d / "emb_pre.h5", d / "rad.h5", "-o", d / "dec_pre.h5"],
                 ["decode", d / "share.h5", d / "emb_ft.h5", d / "rad.h5", "-o", d / "dec_ft.h5"]):
        r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    return d, P
