"""The report's headline says which tests its feature and group counts come from."""

import pandas as pd

from radlens_cli.report.html import features_vs_groups


def test_features_vs_groups_names_the_test_the_tables_hold():
    delta = pd.DataFrame({"q_bh": [0.5, 0.01]})
    symmetric = pd.DataFrame({"q_bh": [0.9], "null_delta": [0.05], "test": ["nb_corrected_t_interval"]})
    calibrated = pd.DataFrame({"q_bh": [0.9], "wilcoxon_p": [0.9]})
    sym = features_vs_groups(delta, symmetric)
    assert "group-mean Δr²" in sym and "interval null" in sym and "Wilcoxon" not in sym
    cal = features_vs_groups(delta, calibrated)
    assert "Wilcoxon" in cal and "interval null" not in cal
    assert features_vs_groups(pd.DataFrame({"x": [1]}), symmetric) == ""
