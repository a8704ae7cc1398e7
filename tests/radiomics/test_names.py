"""Column names <modality>/<image type>_<family>_<feature> and their metadata."""

import numpy as np

from radlens_cli.names import parse_column_names, parse_column


def test_parse_column_examples():
    assert parse_column("t2/wavelet-LLH_glcm_Correlation") == ("t2", "wavelet-LLH", "glcm", "Correlation")
    assert parse_column("t2/original_firstorder_Mean") == ("t2", "original", "firstorder", "Mean")
    assert parse_column("adc/log-sigma-3-0-mm-3D_glszm_ZoneEntropy") == (
        "adc", "log-sigma-3-0-mm-3D", "glszm", "ZoneEntropy")
    assert parse_column("dwi/original_shape_MeshVolume") == ("dwi", "original", "shape", "MeshVolume")
    # no modality prefix, and names that are not radiomic features
    assert parse_column("original_ngtdm_Busyness") == ("", "original", "ngtdm", "Busyness")
    assert parse_column("age") == ("", "", "", "age")
    assert parse_column("t2/age") == ("t2", "", "", "age")
    # a modality column name may itself hold a slash: the feature part never does
    assert parse_column("dwi/b1400/original_glcm_Idm") == ("dwi/b1400", "original", "glcm", "Idm")


def test_parse_column_names_arrays():
    cols = ["t2/original_firstorder_Mean", "adc/wavelet-HHH_gldm_DependenceEntropy", "x"]
    meta = parse_column_names(cols)
    assert set(meta) == {"modality", "image_type", "family", "feature"}
    assert all(isinstance(v, np.ndarray) and len(v) == 3 for v in meta.values())
    assert list(meta["modality"]) == ["t2", "adc", ""]
    assert list(meta["image_type"]) == ["original", "wavelet-HHH", ""]
    assert list(meta["family"]) == ["firstorder", "gldm", ""]
    assert list(meta["feature"]) == ["Mean", "DependenceEntropy", "x"]
    assert len(parse_column_names([])["feature"]) == 0


def test_family_label_one_table_for_lens_and_report():
    from radlens_cli.names import family_label
    from radlens_cli.report import data as rd

    assert family_label("glcm") == "GLCM" and family_label("GLCM") == "GLCM"
    assert family_label("shape2D") == family_label("shape2d") == "Shape 2D"
    assert family_label("custom") == "custom"
    from radlens_cli.report import checkpoints, figures, html

    # every report module that labels families uses this one function
    assert html.family_label is family_label and figures.family_label is family_label
    assert checkpoints.family_label is family_label
    # the report derives a column's metadata with the one parser (names without a family stay whole)
    assert rd._parse_column_name("t2/wavelet-LLH_glcm_Correlation") == dict(
        modality="t2", image_type="wavelet-LLH", family="glcm", feature="Correlation")
    assert rd._parse_column_name("age")["feature"] == "age"
