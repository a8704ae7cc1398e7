"""Named parameter presets (`--params paper|quick`) shipped inside the package, beside files."""

import json

import h5py
import yaml

from radlens_cli.provenance import sha256_file
from radlens_cli.radiomics.params import PRESETS, load_params, resolve_params
from tests.radiomics.conftest import PAPER, QUICK, make_cohort


def test_preset_names_resolve_to_the_packaged_files():
    assert set(PRESETS) == {"paper", "quick"}
    assert resolve_params("paper") == str(PAPER) and resolve_params("quick") == str(QUICK)
    assert load_params("paper") == load_params(str(PAPER))
    paper = load_params("paper")
    assert paper["imageType"] == {"Original": {}, "Wavelet": {}}
    assert paper["setting"]["resampledPixelSpacing"] == [0.5, 0.5, 1.0]


def test_an_existing_file_wins_over_a_preset_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quick").write_text("imageType: {Original: {}}\nfeatureClass: {firstorder: []}\n")
    assert resolve_params("quick") == "quick"
    assert load_params("quick")["featureClass"] == {"firstorder": []}
    assert resolve_params("nope.yaml") == "nope.yaml"  # neither: left as is, for the error to name


def test_print_params_prints_the_preset_and_exits(cli):
    r = cli("extract-radiomics", "--print-params", "paper")  # no manifest or required options needed
    assert r.exit_code == 0, r
    assert r.stdout == PAPER.read_text(encoding="utf-8")
    assert yaml.safe_load(r.stdout)["featureClass"] == yaml.safe_load(PAPER.read_text())["featureClass"]


def test_unknown_preset_and_missing_file_are_one_line_errors(cli, tmp_path):
    r = cli("extract-radiomics", "--print-params", "papr")
    assert r.exit_code == 2 and "no preset named 'papr'; presets: paper, quick" in r.stderr, r
    manifest = make_cohort(tmp_path / "c", n_cases=1, shape=(6, 12, 12), modalities=("t2",))
    r = cli("extract-radiomics", manifest, "--modalities", "t2", "--mask", "zones", "--params", "papr",
            "-o", tmp_path / "o.h5")
    assert r.exit_code == 2, r   # a mistyped preset is a usage error (issue 25), before any work
    assert "--params papr: no such preset or file; did you mean paper? (presets: paper, quick" in r.stderr
    assert not (tmp_path / "o.h5").exists()
    r = cli("extract-radiomics", manifest, "--modalities", "t2", "--mask", "zones", "--params",
            tmp_path / "nope.yaml", "-o", tmp_path / "o.h5")
    assert r.exit_code == 1 and "params file not found" in r.stderr, r   # a missing file: data


def test_preset_run_records_the_preset_file_with_its_hash(cli, tmp_path):
    manifest = make_cohort(tmp_path / "c", n_cases=2, shape=(6, 12, 12), modalities=("t2",))
    out = tmp_path / "q.h5"
    r = cli("extract-radiomics", manifest, "--modalities", "t2", "--mask", "zones", "--params", "quick",
            "-o", out)
    assert r.exit_code == 0, r
    with h5py.File(out, "r") as f:
        inputs = json.loads(f.attrs["inputs"])
        params = json.loads(f.attrs["params"])
    assert inputs["params"] == {"path": str(QUICK), "sha256": sha256_file(QUICK)}
    assert params["extraction"]["pyradiomics_params"] == load_params(str(QUICK))


def test_examples_makefile_uses_the_preset_names():
    from tests.conftest import REPO

    text = (REPO / "examples" / "Makefile").read_text()
    assert "PARAMS        ?= paper" in text and "PARAMS        ?= quick" in text
    assert not list((REPO / "examples").glob("params/*.yaml"))  # one copy: the package data


def test_a_mask_label_missing_in_every_case_is_summarised(cli, tmp_path):
    """Issue 25: one problem in every case printed one near-identical line per case."""
    manifest = make_cohort(tmp_path / "c", n_cases=6, shape=(6, 12, 12), modalities=("t2",))
    r = cli("extract-radiomics", manifest, "--modalities", "t2", "--mask", "zones:9", "--params", "quick",
            "-o", tmp_path / "o.h5")
    assert r.exit_code == 1, r
    per_case = [line for line in r.stderr.splitlines() if ": failed: case " in line]
    assert len(per_case) == 3                       # the first few, in full
    summary = [line for line in r.stderr.splitlines() if "6 (case, modality) task(s) failed" in line]
    assert len(summary) == 1 and "every task failed alike" in summary[0], r.stderr
    assert len(r.stderr.splitlines()) < 12
