"""`radlens cka` against the STYLE conventions (tests/commands/harness.py)."""

import dataclasses
import io

import h5py
import numpy as np
import pandas as pd
import pytest

from radlens_cli.io.tables import CaseTable, write_table
from radlens_cli.lens import cka as lk
from tests.commands import harness as h
from tests.planted import planted_pair

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
              read=lambda p: h.read_csv(p, PARAMS), out_name="cka.csv", stdin_role="a", seeded=True)


def test_default_run(cli, tmp_path):
    r, out = h.run_to(cli, SPEC, tmp_path)
    assert r.stdout == ""   # -o took the data: no bare number beside it (issue 25)
    assert "cka 1.000000" in r.stderr
    assert abs(out.data["cka"][0] - 1.0) < 1e-12  # rotation + isotropic scale: the same geometry
    assert out.data["n_cases"][0] == 30  # joined on case_id, not on row order (b is reversed)
    assert out.data["ci_low"][0] <= 1.0 + 1e-12 and out.data["ci_high"][0] >= 1.0 - 1e-9


def test_number_on_stdout_only_without_output(cli, tmp_path):
    files = inputs(tmp_path)
    r = cli("cka", files["a"], files["b"])
    assert r.exit_code == 0, r
    assert abs(float(r.stdout) - 1.0) < 1e-6  # the data, printed with 6 decimals
    q = cli("-q", "cka", files["a"], files["b"], "-o", tmp_path / "c.csv")
    assert q.exit_code == 0, q
    assert q.stdout == "" and q.stderr == ""   # -o and -q: nothing on either stream


def test_csv_sidecar_records_inputs_and_params(cli, tmp_path):
    import json

    files = inputs(tmp_path)
    r = cli("cka", files["a"], files["b"], "-o", tmp_path / "c.csv", "--bootstrap", "5", "--seed", "3")
    assert r.exit_code == 0, r
    side = json.loads((tmp_path / "c.csv.json").read_text())
    assert side["inputs"]["a"]["sha256"] and side["inputs"]["b"]["path"].endswith("b.h5")
    assert side["params"]["seed"] == 3 and side["params"]["n_bootstrap"] == 5


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


def test_cka_prints_one_number(cli, tables):
    emb, rad = tables
    r = cli("cka", emb, rad)
    assert r.exit_code == 0, r
    e, g = planted_pair()
    assert r.stdout.strip() == f"{lk.cka(e.values, g.values):.6f}"
    r = cli("cka", emb, emb, "--debiased")
    assert r.stdout.strip() == "1.000000"


def test_cka_csv_bootstrap_deterministic(cli, tables, tmp_path):
    emb, rad = tables
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for out in (a, b):
        r = cli("cka", emb, rad, "-o", out, "--bootstrap", "30", "--seed", "3", "--kernel", "rbf", "--debiased")
        assert r.exit_code == 0, r
    assert a.read_text() == b.read_text()
    row = pd.read_csv(a).iloc[0]
    assert row.n_cases == 60 and row.dims_a == 8 and row.dims_b == 16 and row.n_bootstrap == 30
    assert row.ci_low <= row.cka <= row.ci_high


def test_cka_pipe_and_spaces(cli, spaced_tmp):
    emb, rad = planted_pair()
    write_table(emb, str(spaced_tmp / "e 1.h5"))
    write_table(rad, str(spaced_tmp / "r 1.h5"))
    r = cli("cka", spaced_tmp / "e 1.h5", "-", "-o", "-", input=(spaced_tmp / "r 1.h5").read_bytes())
    assert r.exit_code == 0, r
    df = pd.read_csv(io.StringIO(r.stdout))
    assert len(df) == 1 and df.loc[0, "cka"] == pytest.approx(lk.cka(emb.values, rad.values), rel=1e-9)


def test_cka_drops_nonfinite_columns_and_uses_shared_cases(cli, tmp_path):
    emb, rad = planted_pair()
    rad.values[4, 2] = np.nan
    write_table(emb, str(tmp_path / "e.h5"))
    write_table(rad.take(np.arange(40)), str(tmp_path / "r.h5"))
    r = cli("cka", tmp_path / "e.h5", tmp_path / "r.h5", "--standardize")
    assert r.exit_code == 0, r
    assert "dropped 1 column(s) with non-finite values: t2/original_glcm_F0" in r.stderr
    assert "40 shared cases" in r.stderr
    keep = [j for j in range(16) if j != 2]
    z = lambda v: (v - v.mean(0)) / np.where(v.std(0) > 0, v.std(0), 1)  # noqa: E731
    ref = lk.cka(z(emb.values[:40]), z(rad.values[:40][:, keep]))
    assert float(r.stdout) == pytest.approx(ref, abs=1e-6)


def test_cka_bad_inputs(cli, tables, tmp_path):
    emb, _ = tables
    _, other = planted_pair(prefix="zz")
    write_table(other, str(tmp_path / "o.h5"))
    r = cli("cka", emb, tmp_path / "o.h5")
    assert r.exit_code == 1 and "share no case_id" in r.stderr
    r = cli("cka", emb, emb, "--bootstrap", "5")
    assert r.exit_code == 2 and "needs -o" in r.stderr
    r = cli("cka", emb, emb, "--kernel", "poly")
    assert r.exit_code == 2
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = np.zeros(2)
    r = cli("cka", emb, plain)
    assert r.exit_code == 1 and "not a radlens file" in r.stderr
    (tmp_path / "exists.csv").write_text("x")
    r = cli("cka", emb, emb, "-o", tmp_path / "exists.csv")
    assert r.exit_code == 1 and "output exists" in r.stderr
