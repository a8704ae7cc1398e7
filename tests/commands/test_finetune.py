"""`radlens finetune` end to end on a tiny synthetic cohort (atto, 16x32x32 crop, CPU)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SPLITS = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


def build_cohort(root: Path, n: int = 10, seed: int = 0) -> Path:
    """Phantom cases: a T2-like volume (1x1x2 mm) with a bright gland whose intensity
    sets `grade` (4 classes), gland volume `vol_ml`, a small lesion, and an empty mask."""
    import SimpleITK as sitk

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[0:20, 0:40, 0:40]
    rows = []
    for i in range(n):
        c = np.array([10, 20, 20]) + rng.integers(-2, 3, 3)
        r = 6 + (i % 4) * 1.5
        d = np.sqrt(((zz - c[0]) * 2) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        gland = (d < r).astype(np.uint8)
        grade = i % 4
        img = rng.normal(100, 10, d.shape) + gland * (20 + 15 * grade)
        dl = np.sqrt(((zz - c[0]) * 2) ** 2 + (yy - c[1] - 2) ** 2 + (xx - c[2]) ** 2)
        lesion = (dl < 3).astype(np.uint8) * 2  # label 2 in the label map
        arrays = {"t2": img.astype(np.float32), "gland": gland, "lesion": lesion,
                  "empty": np.zeros_like(gland)}
        for name, arr in arrays.items():
            im = sitk.GetImageFromArray(arr)
            im.SetSpacing((1.0, 1.0, 2.0))
            sitk.WriteImage(im, str(root / f"c{i}_{name}.nii.gz"))
        rows.append({"case_id": f"c{i}", "t2": f"c{i}_t2.nii.gz", "gland": f"c{i}_gland.nii.gz",
                     "lesion": f"c{i}_lesion.nii.gz", "empty": f"c{i}_empty.nii.gz",
                     "split": SPLITS[i % 10], "grade": grade, "vol_ml": round(float(gland.sum()) * 2e-3, 4),
                     "holey": "" if i in (3, 7) else grade})
    path = root / "cohort.csv"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftcohort")
    manifest = build_cohort(root / "cases")
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    enc = build_encoder("atto", 1)
    encoder = root / "pre.pt"
    save_radlens_checkpoint(str(encoder), enc, "convnextv2_atto", 1, None)
    return {"manifest": manifest, "encoder": encoder, "root": root}


def base_args(c, task="classify", target="grade", epochs=3):
    args = [c["manifest"], "--modalities", "t2", "--mask", "gland", "--encoder", c["encoder"],
            "--task", task, "--crop", "32,32,16", "--spacing", "1,1,2", "--epochs", epochs,
            "--warmup-epochs", "0", "--seed", "1", "--device", "cpu"]
    if task == "segment":
        args += ["--seg-mask", target, "--seg-channels", "8"]
    else:
        args += ["--target", target]
    return args


def read_metrics(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def weights(path):
    obj = torch.load(path, map_location="cpu", weights_only=True)
    return obj["state_dict"], obj["finetune"]


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- default runs ------------------------------------------------------------------------

def test_classify_lowers_loss_and_embed_loads_it_without_arch(cli, cohort, spaced_tmp):
    out = spaced_tmp / "ft cls.pt"
    met = spaced_tmp / "metrics.csv"
    # 8 epochs: over 4 the loss of 3 steps per epoch is noise around its start (cosine lr)
    r = cli("finetune", *base_args(cohort, epochs=8), "--no-augment", "--metrics", met, "-o", out)
    assert r.exit_code == 0, r
    assert r.stdout == ""  # stdout is for data only
    rows = read_metrics(met)
    train = [float(x["loss"]) for x in rows if x["split"] == "train"]
    assert len(train) == 8 and train[-1] < train[0]
    assert [x["split"] for x in rows] == ["train", "val"] * 8 + ["test"]
    assert set(rows[0]) == {"epoch", "split", "n_cases", "loss", "qwk", "lr"}
    assert not os.path.exists(f"{out}.state")

    sd, meta = weights(out)
    assert meta["task"] == "classify" and meta["target"] == "grade" and meta["classes"] == [0, 1, 2, 3]
    assert meta["metric"] == "qwk" and 1 <= meta["best_epoch"] <= 8
    from radlens_cli.encoders.training.finetuned import load_finetuned

    enc, head, meta2 = load_finetuned(str(out))
    assert enc.dims[-1] == 320 and head.fc2.out_features == 4
    assert same_tensors(enc.state_dict(), sd)

    emb = spaced_tmp / "emb.h5"
    r = cli("embed", cohort["manifest"], "--modalities", "t2", "--mask", "gland", "--encoder", out, "-o", emb)
    assert r.exit_code == 0, r
    from radlens_cli.io.tables import read_table

    t = read_table(str(emb))
    assert t.values.shape == (10, 320) and np.isfinite(t.values).all()
    # embed used the preprocessing recorded in the checkpoint (no --crop/--spacing given)
    with torch.no_grad():
        from radlens_cli.encoders.preprocess import CaseDataset, PreprocessConfig
        from radlens_cli.io.manifest import read_manifest

        ds = CaseDataset(read_manifest(str(cohort["manifest"])), PreprocessConfig(["t2"], "gland", (1, 1, 2), (32, 32, 16)))
        ref = enc(ds[0]["volume"][None]).numpy()
    np.testing.assert_allclose(t.values[0], ref[0], rtol=1e-4, atol=1e-4)


def test_regress_and_segment_runs(cli, cohort, tmp_path):
    out = tmp_path / "reg.pt"
    r = cli("finetune", *base_args(cohort, "regress", "vol_ml", epochs=2), "--metrics", tmp_path / "r.csv", "-o", out)
    assert r.exit_code == 0, r
    _, meta = weights(out)
    y = np.array([float(x["vol_ml"]) for x in read_metrics(cohort["manifest"])])
    train = np.array(SPLITS) == "train"
    assert meta["target_scaling"]["mean"] == pytest.approx(y[train].mean())
    assert meta["target_scaling"]["std"] == pytest.approx(y[train].std())
    rows = read_metrics(tmp_path / "r.csv")
    for row in rows:  # mse in original units = standardised mse * std^2
        assert float(row["mse"]) == pytest.approx(float(row["mse_std"]) * y[train].std() ** 2, rel=1e-5)

    out = tmp_path / "seg.pt"
    r = cli("finetune", *base_args(cohort, "segment", "lesion:2", epochs=2), "--metrics", tmp_path / "s.csv",
            "-o", out)
    assert r.exit_code == 0, r
    _, meta = weights(out)
    assert meta["task"] == "segment" and meta["head_config"]["type"] == "UPerNetHead"
    rows = read_metrics(tmp_path / "s.csv")
    assert all(0.0 <= float(x["dice"]) <= 1.0 for x in rows)


def test_same_seed_same_weights_and_frozen_encoder_unchanged(cli, cohort, tmp_path):
    outs = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        outs.append(tmp_path / f"{name}.pt")
        r = cli("finetune", *base_args(cohort, epochs=2), "--seed", seed, "--drop-path", "0.1", "-o", outs[-1])
        assert r.exit_code == 0, r
    (sa, ma), (sb, mb), (sc, _) = (weights(p) for p in outs)
    assert same_tensors(sa, sb) and same_tensors(ma["head_state"], mb["head_state"])
    assert not same_tensors(sa, sc)

    out = tmp_path / "frozen.pt"
    r = cli("finetune", *base_args(cohort, epochs=1), "--freeze-encoder", "--balanced", "-o", out)
    assert r.exit_code == 0, r
    pre = torch.load(cohort["encoder"], weights_only=True)["state_dict"]
    assert same_tensors(weights(out)[0], pre)


# ---- bad inputs --------------------------------------------------------------------------

@pytest.mark.parametrize("extra, task, target, code, message", [
    ([], "classify", "holey", 1, "target column holey is missing or not numeric for case(s) c3, c7"),
    ([], "classify", "nope", 2, "unknown target column(s) nope"),
    ([], "segment", "empty", 1, "segmentation mask empty is empty inside the crop box for every training case"),
    ([], "segment", "nope", 2, "unknown segmentation mask column(s) nope"),
    (["--epochs", "0"], "classify", "grade", 2, "--epochs must be at least 1"),
    (["--balanced"], "regress", "vol_ml", 2, "--balanced applies to --task classify only"),
    (["--modalities", "t2,t2b"], "classify", "grade", 2, "unknown modality column(s) t2b"),
    (["--task", "cluster"], "classify", "grade", 2, "--task must be classify, regress or segment"),
])
def test_bad_inputs(cli, cohort, tmp_path, extra, task, target, code, message):
    out = tmp_path / "x.pt"
    r = cli("finetune", *base_args(cohort, task, target, epochs=1), *extra, "-o", out)
    assert r.exit_code == code, r
    last = r.stderr.strip().splitlines()[-1]  # one line, after any progress messages
    assert last.startswith("radlens finetune: error:") and message in last, r
    assert not out.exists() and not Path(f"{out}.state").exists()


def test_refuses_existing_output_stdout_and_wrong_channels(cli, cohort, tmp_path):
    out = tmp_path / "exists.pt"
    out.write_bytes(b"x")
    r = cli("finetune", *base_args(cohort, epochs=1), "-o", out)
    assert r.exit_code == 1 and "output exists" in r.stderr and "--force" in r.stderr, r
    assert out.read_bytes() == b"x"
    r = cli("finetune", *base_args(cohort, epochs=1), "-o", "-")
    assert r.exit_code == 2 and "not stdout" in r.stderr, r
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    three = tmp_path / "three.pt"
    save_radlens_checkpoint(str(three), build_encoder("atto", 3), "atto", 3, None)
    args = base_args(cohort, epochs=1)
    args[args.index("--encoder") + 1] = three
    r = cli("finetune", *args, "-o", tmp_path / "y.pt")
    assert r.exit_code == 2 and "takes 3 input channel(s)" in r.stderr, r


# ---- resume after kill -9, and DDP under torchrun ------------------------------------------

def _run(args, env_extra=None, launcher=None, timeout=240):
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1",
               OMP_NUM_THREADS=str(torch.get_num_threads()))
    env.update(env_extra or {})
    cmd = (launcher or [sys.executable, "-m", "radlens_cli"]) + ["finetune"] + [str(a) for a in args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=timeout)


def test_resume_after_kill_equals_uninterrupted_run(cli, cohort, tmp_path):
    # drop-path and augmentation on: their randomness must replay exactly after the restart
    args = base_args(cohort, epochs=2) + ["--metrics", tmp_path / "m.csv", "--drop-path", "0.2"]
    ref = tmp_path / "ref.pt"  # uninterrupted, in this process (same thread count as the children)
    r = cli("finetune", *args, "-o", ref, "--metrics", tmp_path / "ref.csv")
    assert r.exit_code == 0, r
    out = tmp_path / "killed.pt"
    # 3 optimiser steps per epoch: step 5 is in the middle of epoch 2
    r = _run(args + ["-o", out], {"RADLENS_FINETUNE_KILL_AT_STEP": "5"})
    assert r.returncode == -9, r.stderr
    assert not out.exists() and Path(f"{out}.state").exists()
    state = torch.load(f"{out}.state", weights_only=True)
    assert state["epoch"] == 1
    r = _run(args + ["-o", out])  # the same command again
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "1 of 2 epoch(s) done" in r.stderr
    assert not Path(f"{out}.state").exists()
    (sa, ma), (sb, mb) = weights(ref), weights(out)
    assert same_tensors(sa, sb) and same_tensors(ma["head_state"], mb["head_state"])
    assert read_metrics(tmp_path / "m.csv") == read_metrics(tmp_path / "ref.csv")


def test_resume_state_of_another_run_is_refused(cli, cohort, tmp_path):
    out = tmp_path / "o.pt"
    Path(f"{out}.state").write_bytes(b"not a state")
    r = cli("finetune", *base_args(cohort, epochs=1), "-o", out)
    assert r.exit_code == 1 and "--no-resume" in r.stderr, r
    r = cli("finetune", *base_args(cohort, epochs=1), "--no-resume", "-o", out)
    assert r.exit_code == 0, r
    assert not Path(f"{out}.state").exists()


def test_ddp_two_ranks_on_cpu_with_torchrun(cohort, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.fail(f"torchrun not found beside {sys.executable}: torch installs it")
    out = tmp_path / "ddp.pt"
    met = tmp_path / "ddp.csv"
    r = _run(base_args(cohort, epochs=1) + ["-o", out, "--metrics", met], {"OMP_NUM_THREADS": "1"},
             launcher=[torchrun, "--standalone", "--nproc_per_node=2", "-m", "radlens_cli"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "x2 ranks" in r.stderr
    rows = read_metrics(met)
    assert [x["split"] for x in rows] == ["train", "val", "test"]
    # 6 train cases over 2 ranks with batch 2: each rank trains one pair (a lone case is dropped)
    assert int(rows[0]["n_cases"]) == 4 and int(rows[1]["n_cases"]) == 2
    sd, meta = weights(out)
    assert meta["params"]["world_size"] == 2 and not Path(f"{out}.state").exists()


def test_timing_hooks_for_the_benchmark(cohort, tmp_path):
    from radlens_cli.encoders.convnextv2 import build_encoder
    from radlens_cli.commands.finetune import finetune
    from radlens_cli.encoders.training.benchmark import train_step_throughput

    out = tmp_path / "never.pt"
    res = finetune(str(cohort["manifest"]), ["t2"], "gland", str(cohort["encoder"]), "classify", str(out),
                   target="grade", epochs=5, crop=(16, 32, 32), spacing=(1, 1, 2), device="cpu", max_steps=2)
    assert res["train_steps"] == 2 and res["train_volumes"] == 4 and res["train_seconds"] > 0
    assert res["stopped_early"] and not out.exists() and not Path(f"{out}.state").exists()
    res = finetune(str(cohort["manifest"]), ["t2"], "gland", str(cohort["encoder"]), "classify", str(out),
                   target="grade", epochs=5, crop=(16, 32, 32), spacing=(1, 1, 2), device="cpu", max_steps=3,
                   timing_warmup_steps=1)
    assert res["train_steps"] == 3 and res["train_volumes"] == 4  # the first step is not timed
    vps = train_step_throughput(build_encoder("atto", 1), None, torch.randn(2, 1, 16, 32, 32), steps=1,
                                device="cpu", amp=False, warmup=0)
    assert vps > 0


def test_a_bad_case_in_a_worker_is_one_line_naming_it(cli, cohort, tmp_path):
    rows = read_metrics(cohort["manifest"])
    base = Path(cohort["manifest"]).parent
    for row in rows:
        for col in ("t2", "gland", "lesion", "empty"):
            row[col] = str(base / row[col])
    rows[4]["t2"] = str(base / "gone.nii.gz")
    bad = tmp_path / "bad.csv"
    with open(bad, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    args = base_args(cohort, epochs=1)
    args[0] = bad
    r = cli("finetune", *args, "--workers", "1", "-o", tmp_path / "o.pt")
    assert r.exit_code == 1, r
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("radlens finetune: error: case c4:") and "gone.nii.gz" in last, r
    assert "Traceback" not in r.stderr and not (tmp_path / "o.pt").exists()
