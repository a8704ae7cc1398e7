"""`radlens report`: numbers labelled by the statistic they hold, q-based headline, decodability,
the fine-tuning task named from its records, and several checkpoints (heatmap, trajectory,
dendrogram)."""

import re

import numpy as np
import pandas as pd
import pytest

from tests.report.conftest import make_inputs
from tests.report.test_report import parse


def _run(cli, paths, out, *extra):
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"],
            "-o", out, *extra)
    assert r.exit_code == 0, r.stderr
    return out.read_text(encoding="utf-8"), re.sub(r"\s+", " ", " ".join(parse(out).text))


def _captions(html):
    return re.findall(r"<figcaption>([^<]*)</figcaption>", html)


def test_old_ci_columns_are_never_labelled_as_delta_i(cli, tmp_path):
    paths = make_inputs(tmp_path, fmt="old")
    html, text = _run(cli, paths, tmp_path / "r.html", "--rank-by", "delta_r2")
    caps = " ".join(_captions(html))
    assert "bootstrap confidence interval" not in caps
    assert "CI low (statistic not named)" in text and "they are listed, not drawn" in text
    assert "change importance" not in text
    # the null count names q_bh and says the test is not recorded
    raw = pd.read_csv(paths["compare"])
    assert f"{int((raw['q_bh'] < 0.05).sum())} of {len(raw)} features changed beyond the null at q_bh < 0.05" in text
    assert "test not recorded" in text
    # no --metrics/--encoder: the task is said to be unknown, not assumed
    assert "fine-tuning task is not recorded" in text and "regress gland volume" not in text


def test_named_intervals_are_drawn_for_their_statistic(cli, tmp_path):
    paths = make_inputs(tmp_path, fmt="new")
    html, text = _run(cli, paths, tmp_path / "r.html")
    gains = next(c for c in _captions(html) if c.startswith("Largest gains"))
    assert gains.startswith("Largest gains, ranked by Δr²")
    assert "Δr² of each radiomic feature with its bootstrap confidence interval" in gains
    assert "ΔI of each radiomic feature with its bootstrap confidence interval" in gains
    assert "delta_r2_ci_low" in text and "statistic not named" not in text
    raw = pd.read_csv(paths["compare"])
    assert (f"{int((raw['q_bh'] < 0.05).sum())} of {len(raw)} features changed beyond the null at q_bh < 0.05 "
            f"(test: rotation null of delta_r2") in text
    assert "Ranked by <code>delta_r2</code>, Δr² (held-out decodability change) (compare's ranks)" in html


def test_undecodable_features_stay_out_and_a_majority_is_warned(cli, tmp_path):
    paths = make_inputs(tmp_path, fmt="new", undecodable=0.8)
    html, text = _run(cli, paths, tmp_path / "r.html", "--top", "8")
    raw = pd.read_csv(paths["compare"])
    bad = set(raw.loc[~raw["decodable"], "column"])
    n_bad = len(bad)
    assert n_bad > len(raw) / 2
    assert f"Warning: most features are not decodable. {n_bad} of {len(raw)} features" in text
    delta_sec = html[html.index('<section id="delta">'):html.index("</section>", html.index('<section id="delta">'))]
    rows = re.findall(r'<tr><td class="txt">([^<]+)</td>', delta_sec)
    assert len(rows) >= 16 and not set(rows) & bad
    # a few: a note without the warning
    from radlens_cli.report.data import read_delta
    from radlens_cli.report.html import decodable_sentence

    (tmp_path / "few").mkdir()
    note, most = decodable_sentence(read_delta(make_inputs(tmp_path / "few", fmt="new", undecodable=0.1)["compare"]))
    assert "are not decodable in either stage (as the compare table marks them" in note and not most


def test_task_named_from_records_not_assumed(cli, tmp_path):
    import torch

    from radlens_cli.report.data import read_csv
    from radlens_cli.report.html import task_summary

    paths = make_inputs(tmp_path, fmt="old")
    met = [(paths["metrics"], read_csv(paths["metrics"], "--metrics"))]
    assert task_summary(met, [], "fine-tuned") == ("classify (target not recorded in the metrics CSV)",
                                                    "metrics ft metrics.csv")
    torch.save({"radlens_checkpoint": 1, "finetune": {"task": "regress", "target": "psa_density", "epoch": None}},
               tmp_path / "ft.pt")
    _, text = _run(cli, paths, tmp_path / "c.html", "--metrics", paths["metrics"], "--encoder", tmp_path / "ft.pt")
    assert "The encoder was fine-tuned to regress psa_density (read from checkpoint ft.pt)" in text
    assert "This encoder was fine-tuned to regress psa_density" in text  # the size section too
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"],
            "-o", tmp_path / "d.html", "--encoder", tmp_path / "plain.pt")
    assert r.exit_code == 1 and "plain.pt: not a radlens finetune checkpoint" in r.stderr


EPOCHS = ("ft-epoch001", "ft-epoch002", "ft-epoch004")
TASKS = ("volume", "risk", "zones", "lesion")


def test_ordered_checkpoints_get_heatmap_and_trajectory(cli, tmp_path):
    from radlens_cli.report.checkpoints import family_matrix
    from radlens_cli.report.data import read_delta

    paths = make_inputs(tmp_path, fmt="new", checkpoints=EPOCHS)
    figs = tmp_path / "figs"
    html, text = _run(cli, paths, tmp_path / "r.html", "--figures", figs)
    assert "checkpoints" in parse(tmp_path / "r.html").sections
    assert (figs / "fig_checkpoints_heatmap.png").is_file() and (figs / "fig_checkpoints_trajectory.png").is_file()
    assert not (figs / "fig_checkpoints_dendrogram.png").exists()
    assert "Order: each checkpoint records an epoch of one run" in text
    assert "Checkpoint ft-epoch004 against the reference (3 compared" in text
    # the heatmap's numbers: mean Δr² of each family's decodable features, per checkpoint
    delta = read_delta(paths["compare"])
    fams, names, mat = family_matrix(delta, "delta_r2")
    raw = pd.read_csv(paths["compare"])
    for j, ck in enumerate(EPOCHS):
        for i, f in enumerate(fams):
            sub = raw[(raw["checkpoint"] == ck) & (raw["family"] == f) & raw["decodable"]]
            assert mat[i, j] == pytest.approx(sub["delta_r2"].mean())
    # the views, Table 1 and headline describe the last checkpoint unless told otherwise
    _, text = _run(cli, paths, tmp_path / "r2.html", "--checkpoint", "ft-epoch002")
    sub = raw[raw["checkpoint"] == "ft-epoch002"]
    assert f"{int((sub['q_bh'] < 0.05).sum())} of {len(sub)} features changed beyond the null" in text
    stats = pd.read_csv(paths["stats"])
    blk = stats[stats["checkpoint"] == "ft-epoch002"]
    assert f"{int((blk['q_bh'] < 0.05).sum())} of {len(blk)} Table-1 groups" in text
    # --unordered: not a trajectory (a dendrogram, as for separate tasks)
    from radlens_cli.report.checkpoints import checkpoint_order

    assert checkpoint_order(delta, [], None)[:3] == (True, [1, 2, 4], "each checkpoint records an epoch of one run")
    assert checkpoint_order(delta, [], False)[:3] == (False, [1, 2, 3], "--unordered")
    # an epoch recorded in a --encoder checkpoint (finetune --save-every) wins over the label
    enc = [{"path": f"x/{n}.pt", "epoch": e, "run": "run-a"} for n, e in zip(EPOCHS, (10, 20, 40))]
    assert checkpoint_order(delta, enc, None)[:2] == (True, [10, 20, 40])
    enc[1]["run"] = "run-b"  # epochs of two runs are not one trajectory
    assert checkpoint_order(delta, enc, None)[0] is False


def test_separate_tasks_get_a_dendrogram_that_pairs_similar_changes(cli, tmp_path):
    from radlens_cli.report.checkpoints import dendrogram, profiles
    from radlens_cli.report.data import read_delta

    paths = make_inputs(tmp_path, fmt="new", checkpoints=TASKS)
    raw = pd.read_csv(paths["compare"])
    # plant: volume and zones change the same way, risk and lesion the opposite way
    rng = np.random.default_rng(5)
    base = rng.normal(0, 0.1, (raw["checkpoint"] == "volume").sum())
    for ck, sign in (("volume", 1), ("zones", 1), ("risk", -1), ("lesion", -1)):
        m = raw["checkpoint"] == ck
        raw.loc[m, "delta_r2"] = sign * base + rng.normal(0, 0.02, m.sum())
        raw.loc[m, "decodable"] = True
    raw.to_csv(paths["compare"], index=False)
    _, text = _run(cli, paths, tmp_path / "r.html", "--figures", tmp_path / "f")
    assert (tmp_path / "f" / "fig_checkpoints_dendrogram.png").is_file()
    assert "the checkpoints do not record epochs of one run" in text
    names, prof = profiles(read_delta(paths["compare"]), "delta_r2")
    assert names == list(TASKS)
    _, z, metric = dendrogram(names, prof, "delta_r2")
    assert metric == "correlation"
    first = {frozenset(map(int, z[i, :2])) for i in range(2)}
    assert first == {frozenset({0, 2}), frozenset({1, 3})}  # volume+zones, risk+lesion
    # --ordered with task names: a trajectory in the order given
    from radlens_cli.report.checkpoints import checkpoint_order

    assert checkpoint_order(read_delta(paths["compare"]), [], True)[:3] == (True, [1, 2, 3, 4], "--ordered")
