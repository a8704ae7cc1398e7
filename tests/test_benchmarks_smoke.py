"""The scripts in benchmarks/ at their smallest sizes, so a library refactor that breaks one
fails here (CI does not run the benchmarks themselves; issue 24's move of group_stats broke
validity_reencode.py's calibrated branch unnoticed).

The quick ones run end to end as their own processes (as a user runs them), each writing
only under tmp_path, and the test reads a real number or row out of what they print; the
slow ones (lens.py, lens_default.py, encoders.py, negative_controls.py,
validity_independent.py, monai_onnx_agreement.py: each 10-50 s even at their smallest) are
imported and asked for --help. Nothing here reads ../shared/data: extract.py runs on
synthetic cases written under tmp_path.
"""

from __future__ import annotations

import csv
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO

BENCH = REPO / "benchmarks"


def run(script, *args, cwd, expect=0):
    """`python benchmarks/<script> args` in cwd with this checkout on the path; -> stdout."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    # the benchmarks print Δ, R² and the like: read them as UTF-8 whatever the locale (CI's is ASCII)
    r = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=cwd, env=env,
                       capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=120)
    assert r.returncode == expect, f"exit {r.returncode}\nstdout: {r.stdout[-2000:]}\nstderr: {r.stderr[-3000:]}"
    if expect == 0:
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
    return r.stdout, r.stderr


def table_rows(text, first_cell=None):
    """The rows (lists of cells) of the markdown tables in text, separator lines dropped."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines()
            if line.startswith("|") and not set(line) <= set("|-: ")]
    return [r for r in rows if first_cell is None or r[0] == first_cell]


def load(name):
    """benchmarks/<name>.py imported as a module (its folder on the path, as when run)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


# ---- end to end, smallest sizes --------------------------------------------------------------

def test_correlate_agrees_with_scipy_on_its_subsample(tmp_path):
    out, _ = run("correlate.py", "--cases", 40, "--dims", 6, "--columns", 10, "--loop-pairs", 10,
                 cwd=tmp_path)
    assert "40 cases x 6 deep features x 10 radiomic columns (60 pairs)" in out
    m = re.search(r"max \|rho - scipy\| = (\S+), max \|p - scipy\| = (\S+) on the subsample", out)
    assert m and float(m.group(1)) < 1e-9 and float(m.group(2)) < 1e-9, out


def test_translation_histogram_one_case(tmp_path):
    out, _ = run("translation_histogram.py", "--cases", 1, cwd=tmp_path)
    lines = out.splitlines()
    assert lines[0].startswith("1 cases, shift (0.5, -0.5, 0.25) voxels")
    assert lines[1].split() == ["t2", "dwi", "adc"]
    rows = {line[:62].strip(): line[62:].split() for line in lines[2:]}
    assert len(rows) == 11
    # perturb's default keeps the original values by rank: its histogram cannot move
    for label in ("L1 16 bins, default (B-spline + original values by rank)", "L1 64 bins, default"):
        assert [float(v) for v in rows[label][::2]] == [0.0, 0.0, 0.0]
    assert all(float(v) > 0 for v in rows["L1 16 bins, B-spline"][::2])


def test_validity_tiny_cohort(tmp_path):
    out, _ = run("validity.py", "--sizes", "120x8", "--seeds", 1, "--epochs", 2, "--csv",
                 tmp_path / "v.csv", cwd=tmp_path)
    rows = table_rows(out)
    assert rows[0][0] == "condition"
    conditions = [r[0] for r in rows[1:]]
    assert conditions == ["rotation", "permutation", "scale", "shift", "combined", "duplicated",
                          "renoised", "remixed", "anisotropic", "planted"]
    with open(tmp_path / "v.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 10  # nine nulls and planted, one cohort
    again, _ = run("validity.py", "--from-csv", tmp_path / "v.csv", cwd=tmp_path)
    assert table_rows(again) == rows


def test_validity_reencode_both_methods(tmp_path):
    """Both branches: the symmetric one (with the panel's rows) and calibrated-0.2's
    (group_table; issue 24's move of group_stats broke it unnoticed)."""
    out, err = run("validity_reencode.py", "--sizes", "100:1", "--conditions", "second_run,planted",
                   "--resplits", 3, "--d", 16, "--out", tmp_path / "r.csv", cwd=tmp_path)
    with open(tmp_path / "r.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted((r["method"], r["condition"]) for r in rows) == sorted(
        [(m, c) for m in ("symmetric", "symmetric-uncentred", "calibrated") for c in ("second_run", "planted")]
        + [("symmetric-panel", "planted")])             # the panel: second_run's delta, other conditions
    panel = [r for r in rows if r["method"] == "symmetric-panel"]
    assert 0 < float(panel[0]["null_delta"]) < 1
    for r in rows:
        assert int(r["features"]) > 100 and int(r["groups"]) > 20
        if r["condition"] == "planted":
            assert r["planted"] == "24"
    assert len(table_rows(out, "calibrated")) == 2   # its null row and its planted row
    summary, _ = run("validity_reencode.py", "--summarise", tmp_path / "r.csv", cwd=tmp_path)
    assert summary == out


def test_validity_alternatives_tiny(tmp_path):
    run("validity_alternatives.py", "--sizes", "100:1", "--cache", tmp_path / "cache",
        "--out", tmp_path / "alt.csv", cwd=tmp_path)
    with open(tmp_path / "alt.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 4 * 3                   # conditions x tests x deltas
    assert {r["test"] for r in rows} == {"nb", "naive", "caseboot", "nb_centred"}
    assert {r["planted"] for r in rows if r["condition"] == "planted"} == {"24"}
    assert os.path.exists(tmp_path / "cache" / "c_100_0.npz")


def test_validity_probes_tiny(tmp_path):
    out, _ = run("validity_probes.py", "--n", 100, "--seeds", 0, cwd=tmp_path)
    rows = table_rows(out, "0")
    assert [r[1] for r in rows] == ["lens", "linear", "skip", "krr"]
    for r in rows:
        assert all(0 <= float(v) <= 1 for v in r[2:])
    assert re.search(r"pre-trained(\s+\d\.\d\d){14}\n", out)


def test_lens_default_work_tiny(tmp_path):
    out, _ = run("lens_default_work.py", "--n", 100, "--p", 10, "--d", 8, "--epochs-measured", 1,
                 cwd=tmp_path)
    assert "100 cases x 10 columns, d=8, h=256" in out
    assert [r[0] for r in table_rows(out)] == ["method", "symmetric (0.3.0 default)",
                                               "calibrated-0.2 (0.2.0 default)"]


def test_saliency_two_cases(tmp_path):
    out, _ = run("saliency.py", "--cases", 2, "--repeat", 1, "--threads", 1, cwd=tmp_path)
    rows = {line[:28].strip(): line[28:].split() for line in out.splitlines()[3:]}
    assert list(rows) == ["embed", "gradcam (default: table)", "gradcam + NIfTI maps", "gradcam + --deletion"]
    assert rows["embed"][1] == "1.00" and rows["embed"][3] == "1.00"
    assert all(float(v[0]) > 0 for v in rows.values())


def test_encoders_small_two_cases(tmp_path):
    out, _ = run("encoders.py", "--small", "--device", "cpu", "--cases", 2, "--steps", 1, "--jobs", 1, "--threads", 1,
                 cwd=tmp_path)
    assert "convnextv2_atto; crop 48,48,16 (x,y,z) at 1.0,1.0,2.0 mm; 2 cases; batch 2" in out
    rows = {line[:36].strip(): line[36:].split() for line in out.splitlines() if line.startswith("  ")}
    assert list(rows)[1:] == ["embed (no cache)", "embed (filling --cache-dir)",
                              "embed (warm preprocessing cache)", "finetune (classify, augmented)"]
    for name, (e2e, model, ratio) in list(rows.items())[1:]:
        assert float(e2e) > 0 and float(model) > 0
        assert float(ratio) == pytest.approx(float(e2e) / float(model), abs=0.01)


# ---- the slow ones' own pieces, in process and tiny ------------------------------------------

def test_lens_inputs_decode_and_sweep(tmp_path):
    """lens.py builds its share model by hand (ShareModel, fit_scaler, save_share): decode, as
    its part (b) runs it, must read it; part (a)'s sweep at a toy size."""
    lens_bench = load("lens")
    lens_bench.make_inputs(str(tmp_path), 60, 6, 4, 9)
    wall, rss = lens_bench.run_stage(["decode", tmp_path / "share.h5", tmp_path / "emb_pre.h5",
                                      tmp_path / "rad.h5", "-o", tmp_path / "dec_pre.h5"])
    assert wall > 0 and 0 < rss < 2
    from radlens_cli.io.tables import read_table

    assert read_table(str(tmp_path / "rad.h5")).values.shape == (60, 9)
    assert (tmp_path / "dec_pre.h5").stat().st_size > 0
    single, sweep, threads, single_cpu, sweep_cpu = lens_bench.bench_sweep(80, 6, 4, 5, 1, 32)
    assert min(single, sweep, single_cpu, sweep_cpu) > 0 and threads >= 1


def test_lens_default_inputs(tmp_path):
    from radlens_cli.io.tables import read_table

    load("lens_default").make_inputs(str(tmp_path), 50, 4, 7)
    rad, pre, ft = (read_table(str(tmp_path / f"{k}.h5")) for k in ("rad", "emb_pre", "emb_ft"))
    assert rad.values.shape == (50, 7) and pre.values.shape == ft.values.shape == (50, 4)
    assert list(rad.case_id) == list(pre.case_id) and not np.allclose(pre.values, ft.values)


def test_validity_independent_cohort():
    rad, tables, sets = load("validity_independent").make_cohort(60, 8, 0)
    assert set(tables) == {"pre", "rotation", "permutation", "scale", "shift", "combined",
                           "perdim_scale", "planted"}
    pre = tables["pre"].values
    assert all(t.values.shape == (60, 8) for t in tables.values())
    assert np.allclose(tables["scale"].values, 1.3 * pre)
    assert rad.values.shape == (60, 12 * 5 + 15)       # 12 latents x 5 columns, 15 noise columns
    assert all(re.fullmatch(r"(t2|adc|dwi)/[\w-]+_[a-z]+_\w+", c) for c in rad.columns), rad.columns[:3]
    assert [len(sets[k]) for k in ("A", "down", "up", "noise")] == [30, 15, 15, 15]


def synthetic_pyradiomics_cases(folder):
    """The five file pairs extract.py expects, as tiny noisy volumes with a box label."""
    import SimpleITK as sitk

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for case in ("brain1", "brain2", "breast1", "lung1", "lung2"):
        image = rng.normal(100, 20, size=(8, 16, 16)).astype(np.float32)
        label = np.zeros(image.shape, np.uint8)
        label[2:6, 4:12, 4:12] = 1
        for arr, kind in ((image, "image"), (label, "label")):
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(im, str(folder / f"{case}_{kind}.nrrd"))


def test_extract_on_synthetic_cases(tmp_path):
    synthetic_pyradiomics_cases(tmp_path / "data" / "pyradiomics-cases")
    out, _ = run("extract.py", "--data", tmp_path / "data", "--jobs", 1, "--params",
                 REPO / "radlens_cli" / "radiomics" / "presets" / "quick.yaml", cwd=tmp_path)
    assert "10 jobs (5 cases x 2) with quick.yaml" in out
    m = re.search(r"features: 93 per job; (\d+) of 930 values identical(; largest relative difference (\S+))?", out)
    assert m, out
    # radlens and the CLI agree to rounding (on these float32 noise volumes some values differ
    # in the last bits; on PyRadiomics' real cases all are identical, README "Performance")
    assert int(m.group(1)) == 930 or float(m.group(3)) < 1e-12, out
    assert re.search(r"ratio radlens / CLI: \d+\.\d\d", out)


# ---- absent data or packages: a message and a non-zero exit, no traceback ---------------------

def test_extract_without_data_says_so(tmp_path):
    _, err = run("extract.py", "--data", tmp_path / "nowhere", cwd=tmp_path, expect=1)
    assert "pyradiomics-cases not found" in err and "--data" in err and "Traceback" not in err
    (tmp_path / "partial" / "pyradiomics-cases").mkdir(parents=True)
    _, err = run("extract.py", "--data", tmp_path / "partial", cwd=tmp_path, expect=1)
    assert "lacks brain1_image.nrrd" in err and "Traceback" not in err


def test_monai_agreement_without_monai_says_so(tmp_path):
    code = ("import sys, runpy; sys.modules['monai'] = None; sys.argv = ['x']; "
            f"runpy.run_path({str(BENCH / 'monai_onnx_agreement.py')!r}, run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       encoding="utf-8", errors="replace",
                       env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8"), timeout=60)
    assert r.returncode == 1 and "needs monai, onnx and nibabel" in r.stderr
    assert "Traceback" not in r.stderr


# ---- too slow to run here: the script imports and its options parse --------------------------

@pytest.mark.parametrize("name, option", [
    ("encoders", "--threads"), ("lens", "--quick"), ("lens_default", "--quick"),
    ("negative_controls", "--cases"), ("validity_independent", "--cohorts"),
    ("monai_onnx_agreement", "usage:"), ("correlate", "--loop-pairs"), ("extract", "--data"),
    ("saliency", "--repeat"), ("translation_histogram", "--cases"), ("validity", "--from-csv"),
    ("validity_alternatives", "--cache"), ("validity_probes", "--encoder"),
    ("validity_reencode", "--summarise"), ("lens_default_work", "--epochs-measured"),
])
def test_help(name, option, monkeypatch, capsys):
    mod = load(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
    with pytest.raises(SystemExit) as e:
        mod.main()
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {name}.py") and option in out


def test_paper_size_module():
    ps = load("paper_size")
    cols = ps.paper_columns(2511)
    assert len(set(cols)) == 2511 and cols[0] == "t2/original_firstorder_F0000"
    assert cols[4] == "adc/wavelet-LLL_firstorder_F0004" and cols[28] == "adc/original_glcm_F0028"
    ids, split = ps.paper_cases(np.random.default_rng(0), 1900)
    assert ids[0] == "case00000" and len(ids) == 1900
    frac = {s: float(np.mean(split == s)) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.7) < 0.03 and abs(frac["val"] - 0.1) < 0.02 and abs(frac["test"] - 0.2) < 0.03
