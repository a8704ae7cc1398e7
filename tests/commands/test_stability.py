"""`radlens stability` against the STYLE conventions (tests/commands/harness.py), and the ICC
it writes against pingouin's intraclass_corr."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radlens_cli.io.tables import CaseTable, write_table
from tests.commands import harness as h


def replicate_table(n=12, k=4, seed=0):
    """Subjects s0.. with k replicates each; column j has between/within variance ratio r_j."""
    rng = np.random.default_rng(seed)
    ratios = np.array([0.95, 0.6, 0.1])
    subj = rng.normal(size=(n, 3)) * np.sqrt(ratios)
    x = np.repeat(subj, k, axis=0) + rng.normal(size=(n * k, 3)) * np.sqrt(1 - ratios)
    subjects = np.repeat([f"s{i:02d}" for i in range(n)], k)
    ids = np.array([f"{s}_r{j + 1}" for s, j in zip(subjects, np.tile(np.arange(k), n))], dtype=object)
    return ids, subjects, x, ["t2/original_firstorder_Mean", "t2/original_glcm_Imc2", "adc/original_gldm_DNUN"]


def inputs(folder):
    """An HDF5 table and the perturbed manifest naming each case's subject."""
    ids, subjects, x, cols = replicate_table()
    order = np.random.default_rng(1).permutation(len(ids))  # rows in any order: joined on case_id
    write_table(CaseTable(ids[order], x[order], cols), str(folder / "rad.h5"))
    pd.DataFrame({"case_id": ids, "subject": subjects, "t2": "x.nii.gz"}).to_csv(folder / "cohort.csv", index=False)
    return {"table": folder / "rad.h5", "manifest": folder / "cohort.csv"}


def read(path):
    """icc.csv's columns as data, its sidecar's params (the provenance a CSV output carries)."""
    out = h.read_csv(path)
    side = Path(str(path) + ".json")
    attrs = json.loads(side.read_text(encoding="utf-8")) if side.exists() else {}
    return h.Output(out.data, attrs.get("params"), attrs)


SPEC = h.Spec("stability", inputs, lambda i, out, seed: [i["table"], "--manifest", i["manifest"], "-o", out],
              read=read, out_name="icc.csv", stdin_role="table")


def _pingouin(x, subjects):
    import pingouin as pg

    old = pg.options.get("round.column.CI95")
    pg.options["round.column.CI95"] = None
    try:
        rep = pd.Series(subjects).groupby(subjects).cumcount().to_numpy()
        res = pg.intraclass_corr(pd.DataFrame({"s": subjects, "r": rep, "v": x}), targets="s", raters="r",
                                 ratings="v").set_index("Type").loc["ICC(1,1)"]
    finally:
        pg.options["round.column.CI95"] = old
    return float(res["ICC"]), float(res["CI95"][0]), float(res["CI95"][1])


def test_default_run_equals_pingouin(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    df = pd.read_csv(tmp_path / "icc.csv")
    assert list(df.columns) == ["column", "icc", "ci_low", "ci_high", "n_subjects", "n_replicates"]
    ids, subjects, x, cols = replicate_table()
    assert df.column.tolist() == cols
    for j in range(3):
        icc, low, high = _pingouin(x[:, j], subjects)
        assert abs(df.icc[j] - icc) < 1e-9
        assert abs(df.ci_low[j] - low) < 1e-6 and abs(df.ci_high[j] - high) < 1e-6
    assert (df.n_subjects == 12).all() and (df.n_replicates == 4).all()
    assert df.icc[0] > 0.75 > df.icc[2]
    assert out.params["form"] == "ICC(1,1)" and out.params["group"] == "subject" and out.params["ci_level"] == 0.95


def test_group_from_a_csv_tables_own_column(cli, tmp_path):
    ids, subjects, x, cols = replicate_table()
    df = pd.DataFrame(x, columns=cols)
    df.insert(0, "patient", subjects)
    df.insert(0, "case_id", ids)
    df.to_csv(tmp_path / "feat.csv", index=False)
    r = cli("stability", tmp_path / "feat.csv", "--group", "patient", "-o", tmp_path / "a.csv")
    assert r.exit_code == 0, r
    files = inputs(tmp_path)
    r = cli("stability", files["table"], "--manifest", files["manifest"], "-o", tmp_path / "b.csv")
    assert r.exit_code == 0, r
    assert pd.read_csv(tmp_path / "a.csv").equals(pd.read_csv(tmp_path / "b.csv"))
    r = cli("stability", "-", "--group", "patient", "-o", "-", input=(tmp_path / "feat.csv").read_bytes())
    assert r.exit_code == 0, r
    assert r.stdout == (tmp_path / "a.csv").read_text()


def test_pipe(cli, tmp_path):
    h.pipe_out(cli, SPEC, tmp_path / "out")
    h.pipe_in(cli, SPEC, tmp_path / "in")


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_input_same_values_and_parameters(cli, tmp_path):
    h.determinism(cli, SPEC, tmp_path)


@pytest.mark.parametrize("args,code,needles", [
    (["{t}", "-o", "{out}"], 2, ["no `subject` column", "--manifest"]),
    (["{t}", "--manifest", "{m}", "--group", "patient", "-o", "{out}"], 2, ["patient"]),
    (["{t}", "--manifest", "{short}", "-o", "{out}"], 1, ["have no subject", "s11_r4"]),
    (["{t}", "--manifest", "{single}", "-o", "{out}"], 1, ["one case"]),
    (["{t}", "--manifest", "{m}", "--ci-level", "1.5", "-o", "{out}"], 2, ["--ci-level 1.5"]),
])
def test_bad_inputs(cli, tmp_path, args, code, needles):
    files = inputs(tmp_path)
    man = pd.read_csv(files["manifest"])
    man.iloc[:-1].to_csv(tmp_path / "short.csv", index=False)
    man.assign(subject=man.case_id).to_csv(tmp_path / "single.csv", index=False)
    names = {"t": files["table"], "m": files["manifest"], "out": tmp_path / "o.csv",
             "short": tmp_path / "short.csv", "single": tmp_path / "single.csv"}
    h.bad_input(cli, SPEC, tmp_path, [a.format(**names) for a in args], code, *needles)


# ------------------------------------------------------------------ the lens uses it: report

@pytest.fixture(scope="module")
def lens_outputs(lens_run, tmp_path_factory):
    """compare and stats on the session's planted lens run, and an icc.csv that gives every
    other feature a high ICC (decreasing with the Δr² rank) and the rest a low one."""
    from typer.testing import CliRunner

    from radlens_cli.main import app

    d, _ = lens_run
    out = tmp_path_factory.mktemp("stability lens")
    for args in (["compare", d / "dec_pre.h5", d / "dec_ft.h5", "-o", out / "delta.csv"],
                 ["stats", d / "dec_pre.h5", d / "dec_ft.h5", "-o", out / "table.csv"]):
        r = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.stderr
    delta = pd.read_csv(out / "delta.csv")
    order = delta["delta_r2"].rank(method="first").to_numpy()
    icc = np.where(np.arange(len(delta)) % 2 == 0, 0.5 + 0.45 * order / len(delta), 0.1)
    pd.DataFrame({"column": delta["column"], "icc": icc, "ci_low": icc - 0.05, "ci_high": icc + 0.05,
                  "n_subjects": 20, "n_replicates": 5}).to_csv(out / "icc.csv", index=False)
    return d, out


def test_report_shows_icc_and_its_rank_correlation(cli, lens_outputs):
    from scipy.stats import spearmanr

    d, out = lens_outputs
    base = ["report", "--radiomics", d / "rad.h5", "--compare", out / "delta.csv", "--stats", out / "table.csv"]
    r = cli(*base, "--stability", out / "icc.csv", "-o", out / "r.html")
    assert r.exit_code == 0, r
    html = (out / "r.html").read_text(encoding="utf-8")
    assert 'id="stability"' in html and 'id="fig_stability"' in html
    delta = pd.read_csv(out / "delta.csv")
    icc = pd.read_csv(out / "icc.csv")
    want = spearmanr(icc["icc"], delta["delta_r2"]).statistic
    assert f"rho = {want:.3f}" in html
    r = cli(*base, "--stability", out / "icc.csv", "--min-icc", "0.75", "-o", out / "stable.html")
    assert r.exit_code == 0, r
    stable_html = (out / "stable.html").read_text(encoding="utf-8")
    low = icc.loc[icc["icc"] < 0.75, "column"]
    assert any(f">{c}<" in html.split('id="stability"')[0] for c in low)  # unfiltered: some are listed
    gains_losses = stable_html.split('id="stability"')[0]
    assert not any(f">{c}<" in gains_losses for c in low)  # filtered: no unstable feature in the views
    assert f"{len(low)} feature(s) with a lower (or no) ICC are left out" in stable_html
    one_line = cli(*base, "--min-icc", "0.75", "-o", out / "x.html")
    h.one_line_error(one_line, "report", 2, "--min-icc needs --stability")


def test_report_shows_the_negative_control_beside_the_run(cli, lens_outputs):
    """report --control: each modality x family's pre-trained R² of the run and of a control
    (stats' table of the same pipeline on shuffled-roi images), control / real (negatives
    as 0), and which texture groups keep more than half."""
    d, out = lens_outputs
    real = pd.read_csv(out / "table.csv")
    mf = real[real["group_by"] == "modality_family"].copy()
    assert len(mf) >= 3
    # the control: first order kept, one texture group kept (0.9x), the others down to 0.2x or below 0
    factor = {g: (1.0 if "firstorder" in g else 0.2) for g in mf["group"]}
    texture = [g for g in mf["group"] if "firstorder" not in g and mf.set_index("group").loc[g, "r2_pre"] > 0]
    factor[texture[0]] = 0.9
    control = real.copy()
    rows = control["group_by"] == "modality_family"
    control.loc[rows, "r2_pre"] = [r * factor[g] for g, r in zip(control.loc[rows, "group"],
                                                                   control.loc[rows, "r2_pre"])]
    control.loc[rows & (control["group"] == texture[-1]), "r2_pre"] = -0.3
    control.to_csv(out / "control.csv", index=False)
    base = ["report", "--radiomics", d / "rad.h5", "--compare", out / "delta.csv", "--stats", out / "table.csv"]
    r = cli(*base, "--control", out / "control.csv", "-o", out / "c.html")
    assert r.exit_code == 0, r
    html = (out / "c.html").read_text(encoding="utf-8")
    assert 'id="control"' in html
    section = html.split('id="control"')[1]
    from radlens_cli.report.markup import fmt

    for g, r2 in zip(mf["group"], mf["r2_pre"]):
        if r2 <= 0:
            continue
        want = 0.0 if g == texture[-1] else max(r2 * factor[g], 0.0) / r2
        assert f'<td class="">{fmt(want)}</td>' in section, (g, want)
    n_texture = len(texture)
    assert f"{n_texture - 1} of the {n_texture} texture groups" in section
    m, f = texture[0].split("/", 1)
    assert f"{m} {f} (more than half kept)" in section
    prov = json.loads(__import__("html").unescape(html.split('name="radlens-provenance" content="')[1].split('"')[0]))
    assert prov["inputs"]["control"]["path"].endswith("control.csv")
    missing = cli(*base, "--control", out / "nope.csv", "-o", out / "x.html")
    h.one_line_error(missing, "report", 1, "--control file not found")


def test_compare_gains_icc_and_min_icc_leaves_unstable_out_of_bh_and_ranks(cli, lens_outputs):
    from radlens_cli.lens.fdr import bh_fdr

    d, out = lens_outputs
    icc = pd.read_csv(out / "icc.csv").set_index("column")["icc"]
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "--stability", out / "icc.csv", "-o", out / "d1.csv")
    assert r.exit_code == 0, r
    full = pd.read_csv(out / "d1.csv")
    base = pd.read_csv(out / "delta.csv")
    assert np.allclose(full["icc"], icc.loc[full["column"]].to_numpy())
    assert full.drop(columns="icc").equals(base)  # nothing else changes without --min-icc
    r = cli("compare", d / "dec_pre.h5", d / "dec_ft.h5", "--stability", out / "icc.csv", "--min-icc", "0.75",
            "--top", "3", "-o", out / "d2.csv")
    assert r.exit_code == 0, r
    kept = pd.read_csv(out / "d2.csv")
    recorded = json.loads(Path(str(out / "d2.csv") + ".json").read_text(encoding="utf-8"))["params"]
    assert recorded["min_icc"] == 0.75 and recorded["stability"] == str(out / "icc.csv")
    assert set(kept["column"]) == set(icc[icc >= 0.75].index) and (kept["icc"] >= 0.75).all()
    assert np.allclose(kept["q_bh"], bh_fdr(kept["p_null"].to_numpy()), equal_nan=True)
    dec = kept[kept["decodable"]]
    assert sorted(dec["rank_gain"].astype(int)) == list(range(1, len(dec) + 1))
    unstable = set(icc[icc < 0.75].index)
    views = r.stderr.split("radlens compare: --min-icc")[0]
    assert not any(c in views for c in unstable)  # the printed views hold stable features only
    assert "left" in r.stderr and f"{len(base) - len(kept)} (checkpoint, feature) row(s)" in r.stderr


def test_stats_min_icc_table1_on_stable_features(cli, lens_outputs):
    d, out = lens_outputs
    icc = pd.read_csv(out / "icc.csv").set_index("column")["icc"]
    r = cli("stats", d / "dec_pre.h5", d / "dec_ft.h5", "--stability", out / "icc.csv", "-o", out / "t1.csv")
    assert r.exit_code == 0, r
    t_all = pd.read_csv(out / "t1.csv")
    r = cli("stats", d / "dec_pre.h5", d / "dec_ft.h5", "--stability", out / "icc.csv", "--min-icc", "0.75",
            "-o", out / "t2.csv")
    assert r.exit_code == 0, r
    t_st = pd.read_csv(out / "t2.csv")
    n_stable = int((icc >= 0.75).sum())
    for t, n in ((t_all, len(icc)), (t_st, n_stable)):
        assert t.groupby("group_by")["n_features"].sum().eq(n).all()
    assert (t_st["median_icc"] >= 0.75).all() and (t_all["median_icc"] < t_st["median_icc"].max() + 1).all()
    delta = pd.read_csv(out / "delta.csv")
    fam = t_st[t_st.group_by == "modality"].iloc[0]
    cols = [c for c in icc[icc >= 0.75].index if c.startswith(fam["group"] + "/")]
    assert fam["n_features"] == len(cols)
    assert fam["r2_pre"] == pytest.approx(delta.set_index("column").loc[cols, "r2_pre"].mean(), abs=1e-9)
    assert fam["median_icc"] == pytest.approx(float(np.median(icc.loc[cols])), abs=1e-9)
    h.bad_input(cli, h.Spec("stats", None, None, None), out, [d / "dec_pre.h5", d / "dec_ft.h5", "--min-icc", "0.5",
                                                               "-o", out / "t3.csv"], 2, "--min-icc needs --stability")
