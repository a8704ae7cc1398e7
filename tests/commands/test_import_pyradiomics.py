"""`radlens import-pyradiomics`: PyRadiomics' own batch CSVs as a radlens case table."""

import json

import h5py
import numpy as np

from radlens_cli.io.tables import read_table


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
