"""The small-sample rule (lens/power.py, issue 25): defaults that fit the cohort, one-line
warnings naming the numbers, and the verdict carried to decode's output."""

import json

import numpy as np
import pytest

from radlens_cli.lens import power
from radlens_cli.lens.decoder import fit_decoder


def test_recommended_hidden_two_decoder_cases_per_coefficient():
    assert power.recommended_hidden(28) == 13      # the 80-case example: 2 * (13 + 1) = 28
    assert power.recommended_hidden(56) == 27
    assert power.recommended_hidden(4) == power.MIN_HIDDEN
    assert power.recommended_hidden(10_000) == power.DEFAULT_HIDDEN   # the paper's h when supported
    for n in range(2 * (power.MIN_HIDDEN + 1), 600):
        h = power.recommended_hidden(n)
        assert not power.assess(n, h).underpowered, (n, h)   # the default never trips its own rule
    assert power.decoder_cases(56, 0.5) == 28 and power.decoder_cases(57, 0.5) == 29
    assert power.decoder_cases(56, 1.0) == 56


def test_ridge_dof_is_the_trace_of_the_hat_matrix():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(30, 6)) @ rng.normal(size=(6, 6))
    Zc = Z - Z.mean(axis=0)
    for alpha in (0.0, 0.5, 40.0):
        # independent: tr(Zc (Zc'Zc + aI)^-1 Zc') by a linear solve, +1 for the intercept
        want = np.trace(Zc @ np.linalg.solve(Zc.T @ Zc + alpha * np.eye(6), Zc.T)) + 1
        dec = fit_decoder(Z, rng.normal(size=(30, 2)), ridge=alpha, intercept=True)
        assert dec.diagnostics["dof"] == pytest.approx(want, rel=1e-9)


def test_each_reason_names_its_numbers():
    ok = power.assess(56, 27, n_eval=32, rank=27, dof=12.0, alpha=70.0)
    assert not ok.underpowered and ok.headline() == ""
    p = power.assess(21, 256, n_eval=16, rank=20, dof=19.5, alpha=2.9e-6, alpha_at_edge=True)
    text = p.headline()
    assert text.startswith("underpowered: 21 decoder cases for h = 256")
    assert "rule wants >= 514" in text and "h <= 9" in text
    assert "19.5 effective degrees of freedom on 21 cases" in text
    assert "ridge alpha 2.9e-06 is at an end of the GCV grid" in text
    assert "16 evaluation cases" in text
    # rank below h because of dead (constant) units is harmless; collinearity is not
    assert not power.assess(60, 20, rank=17, constant=3).underpowered
    assert "rank 15 of 17 non-constant" in power.assess(60, 20, rank=15, constant=3).headline()
    rec = p.to_dict()
    assert rec["underpowered"] is True and rec["rule"] == power.RULE
    json.dumps(rec)   # recorded in decode's params


def test_fit_share_default_h_follows_the_cohort_and_decode_warns(cli, tmp_path):
    """A 60-case cohort: fit-share picks h from the decoder cases and records it; decode's
    output says what it can support; a too-large --hidden is warned about in one line."""
    import h5py

    from radlens_cli.io.tables import write_table
    from tests.planted import planted_pair

    emb, rad = planted_pair(n=60, d=8)
    write_table(emb, str(tmp_path / "emb.h5"))
    write_table(rad, str(tmp_path / "rad.h5"))
    r = cli("fit-share", tmp_path / "emb.h5", tmp_path / "rad.h5", "--epochs", "5", "-o", tmp_path / "s.h5")
    assert r.exit_code == 0, r
    with h5py.File(tmp_path / "s.h5") as f:
        params = json.loads(f.attrs["params"])
    n_dec = params["n_decoder_train"]
    assert params["hidden"] == power.recommended_hidden(n_dec) and params["hidden_from_rule"] is True
    assert f"h = {params['hidden']} for {n_dec} decoder train cases" in r.stderr
    r = cli("decode", tmp_path / "s.h5", tmp_path / "emb.h5", tmp_path / "rad.h5", "-o", tmp_path / "d.h5")
    assert r.exit_code == 0, r
    assert "cond inf" not in r.stderr
    with h5py.File(tmp_path / "d.h5") as f:
        rec = json.loads(f.attrs["params"])["power"]
    assert rec["n_decoder"] == n_dec and rec["hidden"] == params["hidden"]
    assert rec["n_eval"] < 20 and f"{rec['n_eval']} evaluation cases" in " ".join(rec["reasons"])
    assert sum("underpowered:" in line for line in r.stderr.splitlines()) == 1   # one line
    r = cli("fit-share", tmp_path / "emb.h5", tmp_path / "rad.h5", "--epochs", "5", "--hidden", "64",
            "-o", tmp_path / "s64.h5")
    assert r.exit_code == 0, r
    assert f"underpowered: {n_dec} decoder cases for h = 64" in r.stderr
    r = cli("decode", tmp_path / "s64.h5", tmp_path / "emb.h5", tmp_path / "rad.h5", "-o", tmp_path / "d64.h5")
    assert r.exit_code == 0, r
    assert "cond inf" not in r.stderr and f"{n_dec} decoder cases for h = 64" in r.stderr
