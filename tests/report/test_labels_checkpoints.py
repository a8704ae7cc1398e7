"""`radlens report`: numbers labelled by the statistic they hold, q-based headline, decodability,
the fine-tuning task named from its records, and several checkpoints (heatmap, trajectory,
dendrogram). (The older DELTA.csv layout is covered by test_report's full report.)"""

import re

import numpy as np
import pandas as pd
import pytest

from tests.report.conftest import make_inputs
from tests.commands.test_report import parse

EPOCHS = ("ft-epoch001", "ft-epoch002", "ft-epoch004")
TASKS = ("volume", "risk", "zones", "lesion")


def _captions(html):
    return re.findall(r"<figcaption>([^<]*)</figcaption>", html)


def test_several_ordered_checkpoints_with_named_statistics(cli, tmp_path):
    from radlens_cli.report.checkpoints import checkpoint_order, family_matrix
    from radlens_cli.report.data import read_delta

    paths = make_inputs(tmp_path, fmt="new", checkpoints=EPOCHS)
    figs, out = tmp_path / "figs", tmp_path / "r.html"
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"],
            "--figures", figs, "-o", out)
    assert r.exit_code == 0, r.stderr
    html, text = out.read_text(encoding="utf-8"), re.sub(r"\s+", " ", " ".join(parse(out).text))
    assert "checkpoints" in parse(out).sections
    assert (figs / "fig_checkpoints_heatmap.png").is_file() and (figs / "fig_checkpoints_trajectory.png").is_file()
    assert not (figs / "fig_checkpoints_dendrogram.png").exists()
    assert "Order: each checkpoint records an epoch of one run" in text
    # the single-checkpoint sections describe the last checkpoint
    assert "Checkpoint ft-epoch004 against the reference (3 compared" in text
    raw = pd.read_csv(paths["compare"])
    last = raw[raw["checkpoint"] == "ft-epoch004"]
    assert (f"{int((last['q_bh'] < 0.05).sum())} of {len(last)} features changed beyond the null at q_bh < 0.05 "
            f"(test: rotation null of delta_r2") in text
    stats = pd.read_csv(paths["stats"])
    blk = stats[stats["checkpoint"] == "ft-epoch004"]
    assert f"{int((blk['q_bh'] < 0.05).sum())} of {len(blk)} Table-1 groups differ at q_bh < 0.05" in text
    # each interval drawn for the statistic its column names; the ranking statistic read from compare's ranks
    gains = next(c for c in _captions(html) if c.startswith("Largest gains"))
    assert gains.startswith("Largest gains, ranked by Δr²")
    assert "Δr² of each radiomic feature with its bootstrap confidence interval" in gains
    assert "ΔI of each radiomic feature with its bootstrap confidence interval" in gains
    assert "delta_r2_ci_low" in text and "statistic not named" not in text
    assert "Ranked by <code>delta_r2</code>, Δr² (held-out decodability change) (compare's ranks)" in html
    n_bad = int((~last["decodable"]).sum())
    assert f"{n_bad} of {len(last)} features are not decodable in either stage" in text
    # the heatmap's numbers: mean Δr² of each family's decodable features, per checkpoint
    delta = read_delta(paths["compare"])
    fams, names, mat = family_matrix(delta, "delta_r2")
    assert names == list(EPOCHS)
    for j, ck in enumerate(EPOCHS):
        for i, f in enumerate(fams):
            sub = raw[(raw["checkpoint"] == ck) & (raw["family"] == f) & raw["decodable"]]
            assert mat[i, j] == pytest.approx(sub["delta_r2"].mean())
    # order: from the labels, from --encoder records (finetune --save-every), or as told
    assert checkpoint_order(delta, [], None)[:3] == (True, [1, 2, 4], "each checkpoint records an epoch of one run")
    assert checkpoint_order(delta, [], False)[:3] == (False, [1, 2, 3], "--unordered")
    enc = [{"path": f"x/{n}.pt", "epoch": e, "run": "run-a"} for n, e in zip(EPOCHS, (10, 20, 40))]
    assert checkpoint_order(delta, enc, None)[:2] == (True, [10, 20, 40])
    enc[1]["run"] = "run-b"  # epochs of two runs are not one trajectory
    assert checkpoint_order(delta, enc, None)[0] is False


def test_focus_checkpoint_and_its_table1_block(tmp_path):
    from radlens_cli.errors import RadlensError
    from radlens_cli.report.data import focus_checkpoint, read_delta, read_stats, stats_for

    paths = make_inputs(tmp_path, fmt="new", checkpoints=EPOCHS)
    delta, stats = read_delta(paths["compare"]), read_stats(paths["stats"])
    assert focus_checkpoint(delta, None) == "ft-epoch004" and focus_checkpoint(delta, "ft-epoch002") == "ft-epoch002"
    with pytest.raises(RadlensError, match="^checkpoint nope: not in the compare table") as e:
        focus_checkpoint(delta, "nope")
    assert e.value.flagged().startswith("--checkpoint nope: not in the compare table")
    blk = stats_for(stats, "ft-epoch002", False)
    assert set(blk["checkpoint"]) == {"ft-epoch002"} and len(blk) == len(stats) // 3
    raw = pd.read_csv(paths["stats"])
    q = raw.loc[raw["checkpoint"] == "ft-epoch002", "q_bh"].to_numpy()
    assert list(blk["stars"]) == ["***" if v < 0.001 else "**" if v < 0.01 else "*" if v < 0.05 else "" for v in q]


def test_undecodable_features_stay_out_and_a_majority_is_warned(tmp_path):
    from radlens_cli.report.data import read_delta
    from radlens_cli.report.html import decodable_sentence, views

    delta = read_delta(make_inputs(tmp_path, fmt="new", undecodable=0.8)["compare"])
    bad = set(delta.loc[~delta["decodable"], "column"])
    assert len(bad) > len(delta) / 2
    gains, losses, stable, stat = views(delta, 10, 0.5)
    assert stat == "delta_r2" and len(gains) == len(losses) == 10
    assert not (set(gains["column"]) | set(losses["column"]) | set(stable["column"])) & bad
    note, most = decodable_sentence(delta)
    assert most and note.startswith(f"{len(bad)} of {len(delta)} features are not decodable in either stage")
    (tmp_path / "few").mkdir()
    note, most = decodable_sentence(read_delta(make_inputs(tmp_path / "few", fmt="new", undecodable=0.1)["compare"]))
    assert "(as the compare table marks them" in note and not most
    # an older table: decodable derived from R² > 0 in either stage, and said so
    (tmp_path / "old").mkdir()
    old = read_delta(make_inputs(tmp_path / "old", fmt="old")["compare"])
    assert list(old["decodable"]) == list((old["r2_pre"] > 0) | (old["r2_ft"] > 0))
    assert "the compare table has no decodable column" in decodable_sentence(old)[0]


def test_task_named_from_the_checkpoint(cli, tmp_path):
    import torch

    from radlens_cli.report import html as rh
    from radlens_cli.encoders.training.finetuned import read_finetune_record
    from radlens_cli.report.data import read_delta

    paths = make_inputs(tmp_path, fmt="old")
    torch.save({"radlens_checkpoint": 1, "finetune": {"task": "regress", "target": "psa_density", "epoch": 3,
                                                       "run": "abc"}}, tmp_path / "ft.pt")
    info = read_finetune_record(str(tmp_path / "ft.pt"))
    assert (info["task"], info["target"], info["epoch"], info["run"]) == ("regress", "psa_density", 3, "abc")
    assert rh.task_summary([], [info], "fine-tuned")[0] == "regress psa_density"
    assert "ft.pt, the only --encoder" in rh.task_summary([], [info], "fine-tuned")[1]
    assert rh.task_summary([], [], "fine-tuned") == ("", "")
    rep = rh.Report("t")
    rh.size_section(rep, read_delta(paths["compare"]), "regress psa_density")
    assert "This encoder was fine-tuned to regress psa_density." in rep.sections[0][2]
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    r = cli("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"],
            "-o", tmp_path / "d.html", "--encoder", tmp_path / "plain.pt")
    assert r.exit_code == 1 and "plain.pt: not a radlens finetune checkpoint" in r.stderr


def test_separate_tasks_get_a_dendrogram_that_pairs_similar_changes(tmp_path):
    from radlens_cli.report import html as rh
    from radlens_cli.report.checkpoints import checkpoint_order, checkpoints_section, dendrogram, profiles
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
    delta = read_delta(paths["compare"])
    names, prof = profiles(delta, "delta_r2")
    assert names == list(TASKS)
    _, z, metric = dendrogram(names, prof, "delta_r2")
    assert metric == "correlation"
    first = {frozenset(map(int, z[i, :2])) for i in range(2)}
    assert first == {frozenset({0, 2}), frozenset({1, 3})}  # volume+zones, risk+lesion
    rep = rh.Report("t")
    checkpoints_section(rep, delta, [], None)
    assert [f.name for f in rep.figures] == ["fig_checkpoints_heatmap", "fig_checkpoints_dendrogram"]
    assert "the checkpoints do not record epochs of one run" in rep.sections[0][2]
    # --ordered with task names: a trajectory in the order given
    assert checkpoint_order(delta, [], True)[:3] == (True, [1, 2, 3, 4], "--ordered")


def test_task_by_exact_checkpoint_identity_never_a_substring(tmp_path):
    """Issue 25: with encoders ft.pt (volume) and ft_pirads.pt, the report on dec_ft_pirads
    said "regress gland_volume_ml (ft.pt)": `ft` is a substring of the label."""
    import torch

    from radlens_cli.provenance import sha256_file
    from radlens_cli.report import html as rh
    from radlens_cli.encoders.training.finetuned import read_finetune_record as checkpoint_info

    torch.save({"finetune": {"task": "regress", "target": "gland_volume_ml"}}, tmp_path / "ft.pt")
    torch.save({"finetune": {"task": "classify", "target": "pirads"}}, tmp_path / "ft_pirads.pt")
    torch.save({"finetune": {"task": "classify", "target": "risk"}}, tmp_path / "other.pt")
    encs = [checkpoint_info(str(tmp_path / n)) for n in ("ft.pt", "ft_pirads.pt")]
    # no identity recorded: only a file stem equal to the label (or to it without dec_)
    text, src = rh.task_summary([], encs, "dec_ft_pirads")
    assert text == "classify pirads" and "ft_pirads.pt, matched by file name" in src
    assert rh.task_summary([], encs, "pirads_run")[0] == ""      # no exact name: not described
    # the recorded encoder hash decides, whatever the names say
    ids = {"dec_ft_pirads": {"encoder": {"path": "elsewhere/ft.pt",
                                         "sha256": sha256_file(tmp_path / "ft_pirads.pt")}}}
    assert rh.task_summary([], encs, "dec_ft_pirads", ids)[0] == "classify pirads"
    ids = {"dec_ft_pirads": {"encoder": {"path": "x/ft.pt", "sha256": sha256_file(tmp_path / "ft.pt")}}}
    assert rh.task_summary([], encs, "dec_ft_pirads", ids) == (
        "regress gland_volume_ml", "checkpoint ft.pt, matched by sha256")
    # a recorded encoder none of the --encoder files is: said, not guessed
    ids = {"dec_ft_pirads": {"encoder": {"path": "other.pt", "sha256": sha256_file(tmp_path / "other.pt")}}}
    text, src = rh.task_summary([], encs[:1], "dec_ft_pirads", ids)
    assert text == "" and "none of the --encoder checkpoints" in src
def test_report_warns_when_the_radiomics_left_failed_cases_out(cli, tmp_path):
    """A radiomics table written with --keep-going lacks its failed cases; the report says so,
    as the lens commands do when they read it."""
    import json

    import h5py

    paths = make_inputs(tmp_path, fmt="new")
    args = ("report", "--radiomics", paths["radiomics"], "--compare", paths["compare"], "--stats", paths["stats"])
    r = cli(*args, "-o", tmp_path / "a.html")
    assert r.exit_code == 0 and "failed case" not in r.stderr
    with h5py.File(paths["radiomics"], "r+") as f:
        f.attrs["failures"] = json.dumps([{"case_id": "case900", "modality": "t2", "reason": "empty mask",
                                           "status": "failed"}])
    r = cli(*args, "-o", tmp_path / "b.html")
    assert r.exit_code == 0, r.stderr
    assert "written with 1 failed case(s) left out: case900" in r.stderr


def test_checkpoint_epochs_come_from_the_record_and_labels_only_for_old_files():
    """Issue 24: the epoch is stored (embed -> decode -> compare's identities), not parsed from a
    label; a label like NAME-epoch003 is read only for a DELTA.csv written before the record."""
    from radlens_cli.report.checkpoints import checkpoint_order

    delta = pd.DataFrame({"checkpoint": ["a", "b"]})
    delta.attrs["checkpoints"] = ["early", "late"]
    rec = {"early": {"finetune": {"run": "r1", "epoch": 6}}, "late": {"finetune": {"run": "r1", "epoch": 30}}}
    assert checkpoint_order(delta, [], None, rec)[:2] == (True, [6, 30])
    two_runs = {**rec, "late": {"finetune": {"run": "r2", "epoch": 30}}}
    assert checkpoint_order(delta, [], None, two_runs)[:2] == (False, [1, 2])
    delta.attrs["checkpoints"] = ["ft-epoch001", "ft-epoch002"]
    recorded_none = {n: {"finetune": None} for n in delta.attrs["checkpoints"]}  # not finetune checkpoints
    assert checkpoint_order(delta, [], None, recorded_none)[:2] == (False, [1, 2])
    old = {n: {"decoder": {"path": f"{n}.h5"}} for n in delta.attrs["checkpoints"]}  # written before the record
    assert checkpoint_order(delta, [], None, old)[:2] == (True, [1, 2])
