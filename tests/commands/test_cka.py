"""`radlens cka` against the STYLE conventions (tests/commands/harness.py)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from radlens_cli.io.tables import CaseTable, write_table
from tests.commands import harness as h

PARAMS = ("kernel", "debiased", "sigma", "standardize", "split", "n_bootstrap", "level", "seed")


def inputs(folder):
    """b is a rotated and scaled copy of a: linear CKA is exactly 1."""
    rng = np.random.default_rng(0)
    ids = np.array([f"case{i:03d}" for i in range(30)], dtype=object)
    x = rng.normal(size=(30, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    write_table(CaseTable(ids, x, [f"e{j}" for j in range(6)]), str(folder / "a.h5"))
    write_table(CaseTable(ids[::-1], (3 * x @ q)[::-1], [f"f{j}" for j in range(6)]), str(folder / "b.h5"))
    return {"a": folder / "a.h5", "b": folder / "b.h5"}


SPEC = h.Spec("cka", inputs, lambda i, out, seed: [i["a"], i["b"], "-o", out, "--bootstrap", "20",
                                                     "--seed", seed],
              read=lambda p: h.read_csv(p, PARAMS), out_name="cka.csv", stdin_role="a", seeded=True,
              stdout_data=True)


def test_default_run(cli, tmp_path):
    r, out = h.run_to(cli, SPEC, tmp_path)
    assert abs(float(r.stdout) - 1.0) < 1e-6  # printed with 6 decimals
    assert abs(out.data["cka"][0] - 1.0) < 1e-12  # rotation + isotropic scale: the same geometry
    assert out.data["n_cases"][0] == 30  # joined on case_id, not on row order (b is reversed)
    assert out.data["ci_low"][0] <= 1.0 + 1e-12 and out.data["ci_high"][0] >= 1.0 - 1e-9


def test_pipe(cli, tmp_path):
    h.pipe_out(cli, SPEC, tmp_path / "out")
    h.pipe_in(cli, SPEC, tmp_path / "in")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def noisy_inputs(folder):
    """Two unrelated tables: the bootstrap interval depends on the resampled cases."""
    rng = np.random.default_rng(1)
    ids = np.array([f"case{i:03d}" for i in range(30)], dtype=object)
    write_table(CaseTable(ids, rng.normal(size=(30, 6)), [f"e{j}" for j in range(6)]), str(folder / "a.h5"))
    write_table(CaseTable(ids, rng.normal(size=(30, 4)), [f"f{j}" for j in range(4)]), str(folder / "b.h5"))
    return {"a": folder / "a.h5", "b": folder / "b.h5"}


def test_same_seed_same_values_and_parameters(cli, tmp_path):
    a, _, c = h.determinism(cli, dataclasses.replace(SPEC, inputs=noisy_inputs), tmp_path)
    assert a.params["n_bootstrap"] == 20 and a.params["kernel"] == "linear"
    assert a.data["cka"][0] == c.data["cka"][0]  # the point estimate does not depend on the seed
    assert a.data["ci_low"][0] != c.data["ci_low"][0]  # the interval does


@pytest.mark.parametrize("args,code,needles", [
    (["{a}", "{b}", "--bootstrap", "5"], 2, ["--bootstrap needs -o/--output"]),
    (["{a}", "{b}", "--kernel", "cosine"], 2, ["--kernel cosine"]),
    (["{a}", "{missing}"], 1, ["missing.h5"]),
    (["{a}", "{b}", "--ci-level", "1.5", "-o", "{out}"], 2, ["--ci-level 1.5"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = inputs(tmp_path)
    files.update(missing=tmp_path / "missing.h5", out=tmp_path / "o.csv")
    h.bad_input(cli, SPEC, tmp_path, [a.format(**files) for a in args], code, *needles)


def test_ci_level_as_in_compare_and_old_level_hidden_alias(cli, tmp_path):
    files = noisy_inputs(tmp_path)
    rows = {}
    for flag in ("--ci-level", "--level"):
        out = tmp_path / f"{flag.strip('-')}.csv"
        r = cli("cka", files["a"], files["b"], "-o", out, "--bootstrap", "20", flag, "0.8")
        assert r.exit_code == 0, r
        rows[flag] = pd.read_csv(out).iloc[0]
    assert rows["--level"].equals(rows["--ci-level"]) and rows["--ci-level"]["level"] == 0.8
    help_text = cli("cka", "--help").stdout
    assert "--ci-level" in help_text and "--level" not in help_text.replace("--ci-level", "")
