"""`radlens import-pyradiomics`: PyRadiomics' own batch CSVs as a radlens case table."""

import json

import h5py
import numpy as np

from radlens_cli.io.tables import read_table
from tests.commands import harness as h


def test_import_pyradiomics_batch_output(cli, tmp_path):
    """PyRadiomics' batch CSV (Image, Mask, ID, diagnostics_*, features without a modality)."""
    import pandas as pd

    def batch(seed, ids):
        rng = np.random.default_rng(seed)
        return pd.DataFrame({"ID": ids, "Image": [f"/data/{i}.nrrd" for i in ids],
                             "Mask": [f"/data/{i}_m.nrrd" for i in ids],
                             "diagnostics_Versions_PyRadiomics": "3.1.0",
                             "diagnostics_Mask-original_VoxelNum": rng.integers(100, 900, len(ids)),
                             "original_firstorder_Mean": rng.normal(size=len(ids)),
                             "wavelet-LLH_glcm_Correlation": rng.normal(size=len(ids))})

    t2, adc = batch(0, ["c1", "c2", "c3"]), batch(1, ["c3", "c1", "c2"])
    t2.to_csv(tmp_path / "t2.csv", index=False)
    adc.to_csv(tmp_path / "adc.csv")  # with a pandas index: dropped
    r = cli("cka", tmp_path / "t2.csv", tmp_path / "t2.csv")
    assert r.exit_code == 1 and "looks like PyRadiomics batch output" in r.stderr and "import-pyradiomics" in r.stderr
    r = cli("import-pyradiomics", "t2=" + str(tmp_path / "t2.csv"), "adc=" + str(tmp_path / "adc.csv"),
            "-o", tmp_path / "rad.h5")
    assert r.exit_code == 0, r
    t = read_table(str(tmp_path / "rad.h5"))
    assert list(t.case_id) == ["c1", "c2", "c3"]
    assert t.columns == ["t2/original_firstorder_Mean", "t2/wavelet-LLH_glcm_Correlation",
                         "adc/original_firstorder_Mean", "adc/wavelet-LLH_glcm_Correlation"]
    assert list(t.column_meta["family"]) == ["firstorder", "glcm"] * 2
    np.testing.assert_array_equal(t.values[:, 0], t2["original_firstorder_Mean"].to_numpy())
    np.testing.assert_array_equal(t.values[:, 3], adc.set_index("ID").loc[["c1", "c2", "c3"],
                                                                          "wavelet-LLH_glcm_Correlation"])
    with h5py.File(tmp_path / "rad.h5") as f:
        diag = json.loads(f["diagnostics"][1])
    assert diag["adc"]["Image"] == "/data/c2.nrrd" and diag["t2"]["diagnostics_Versions_PyRadiomics"] == "3.1.0"
    assert set(t.split) <= {"train", "val", "test"}
    # one file with a modality column; a case without every modality is an error naming it
    both = pd.concat([t2.assign(Sequence="t2"), adc.assign(Sequence="adc").iloc[:2]])
    both.to_csv(tmp_path / "both.csv", index=False)
    r = cli("import-pyradiomics", tmp_path / "both.csv", "--modality-column", "Sequence", "-o", tmp_path / "b.h5")
    assert r.exit_code == 1 and "case(s) c2 have no row for every modality" in r.stderr, r


# ---------------------------------------------------------------- the STYLE conventions (harness)

def batch_csv(folder):
    """One PyRadiomics batch CSV (ID, Image, Mask, a diagnostic, two features) of 12 cases."""
    import pandas as pd

    rng = np.random.default_rng(2)
    ids = [f"c{i:02d}" for i in range(12)]
    pd.DataFrame({"ID": ids, "Image": [f"/d/{i}.nrrd" for i in ids], "Mask": [f"/d/{i}_m.nrrd" for i in ids],
                  "diagnostics_Versions_PyRadiomics": "3.1.0",
                  "original_firstorder_Mean": rng.normal(size=12),
                  "original_glcm_Contrast": rng.normal(size=12)}).to_csv(folder / "t2 batch.csv", index=False)
    return {"t2": folder / "t2 batch.csv"}


SPEC = h.Spec("import-pyradiomics", batch_csv, lambda i, out, seed: [f"t2={i['t2']}", "-o", out, "--seed", seed],
              read=h.read_h5, out_name="rad.h5", seeded=True, seed_path=("split_seed",))


def test_default_run(cli, tmp_path):
    out = h.default_run(cli, SPEC, tmp_path)
    src = __import__("pandas").read_csv(tmp_path / "t2 batch.csv")
    assert list(out.data["columns"]) == ["t2/original_firstorder_Mean", "t2/original_glcm_Contrast"]
    np.testing.assert_array_equal(out.data["values"][:, 1], src["original_glcm_Contrast"].to_numpy())
    assert set(out.data["split"]) <= {"train", "val", "test"} and out.params["split_seed"] == 0


def test_pipe_out(cli, tmp_path):
    h.pipe_out(cli, SPEC, tmp_path)


def test_path_with_spaces(cli, tmp_path):
    h.spaces(cli, SPEC, tmp_path)


def test_same_seed_same_values_and_parameters(cli, tmp_path):
    a, _, c = h.determinism(cli, SPEC, tmp_path)
    assert list(a.data["split"]) != list(c.data["split"])  # the seed sets the derived split


def test_bad_inputs(cli, tmp_path):
    files = batch_csv(tmp_path)
    (tmp_path / "taken.h5").write_text("x")
    h.bad_input(cli, SPEC, tmp_path, [f"t2={tmp_path / 'nope.csv'}", "-o", tmp_path / "r.h5"], 1, "nope.csv")
    h.bad_input(cli, SPEC, tmp_path, [f"t2={files['t2']}", "-o", tmp_path / "taken.h5"], 1, "output exists")
