"""The report's saliency section: which cases a maps folder's figure shows, and its table."""

import numpy as np
import pandas as pd

from radlens_cli.report.saliency import TITLE_CHARS, agreement_table, map_title, mapped_cases
from radlens_cli.saliency.tables import case_folder


class FakeImages:
    def __init__(self, ids):
        self.row = {c: i for i, c in enumerate(ids)}


def test_mapped_cases_example_cases_first_then_other_mapped_ones(tmp_path):
    ids = [f"c{i:02d}" for i in range(10)]
    for c in ("c01", "c04", "c07", "c08"):
        (tmp_path / case_folder(c)).mkdir()
    imgs = FakeImages(ids)
    rows, note = mapped_cases(imgs, str(tmp_path), ["c01", "c04"])
    assert rows == ["c01", "c04"] and note == "example case(s)"
    # a part of the cohort was mapped: the example case that has maps, then mapped cases in order
    rows, note = mapped_cases(imgs, str(tmp_path), ["c00", "c04", "c05"])
    assert rows == ["c04", "c01", "c07"] and "1 example case(s) with maps" in note
    rows, note = mapped_cases(imgs, str(tmp_path), ["c00", "c02"])
    assert rows == ["c01", "c04"] and "none of the example cases" in note
    rows, _ = mapped_cases(imgs, str(tmp_path / "nothing"), ["c00"])
    assert rows == []


def test_map_titles_fit_over_a_thumbnail():
    assert map_title("case000", "gradcampp") == "case000 · Grad-CAM++"
    t = map_title("case000", "concept_t2_original_glszm_LargeAreaLowGrayLevelEmphasis")
    first, second = t.split("\n")
    assert first == "case000" and second.startswith("t2_glszm_LargeArea") and len(second) <= TITLE_CHARS
    assert map_title("c1", "concept_adc_original_firstorder_Mean") == "c1 · adc_firstorder_Mean"


def test_agreement_table_drops_an_empty_deletion_column():
    df = pd.DataFrame({"case_id": ["a", "b", "a", "b"], "method": ["gradcam", "gradcam", "occlusion", "occlusion"],
                       "mass_in_mask": [0.2, 0.4, 0.1, 0.3], "deletion_auc": [np.nan] * 4,
                       "spearman_occlusion": [0.5, 0.7, np.nan, np.nan], "iou10_occlusion": [0.1, 0.3, np.nan, np.nan],
                       "spearman_gradcam": [np.nan, np.nan, 0.5, 0.7], "iou10_gradcam": [np.nan, np.nan, 0.1, 0.3]})
    t = agreement_table(df)
    assert "deletion_auc" not in t.columns
    assert abs(t.loc[t["map"] == "Grad-CAM", "mass_in_mask"].item() - 0.3) < 1e-12
    df["deletion_auc"] = [0.5, 0.7, 0.2, 0.4]
    t = agreement_table(df)
    assert abs(t.loc[t["map"] == "occlusion", "deletion_auc"].item() - 0.3) < 1e-12
