"""`radlens embed` through the CLI: runs, pipes, parts, bad inputs."""

import json
import os
import shutil

import h5py
import numpy as np
import torch

from radlens_cli.io.tables import read_table
from tests.encoders.conftest import SMALL, atto3, cohort, write_cohort  # noqa: F401 (fixtures)

MODS = ["--modalities", "t2,dwi,adc", "--mask", "gland"]


def embed(cli, manifest, enc, out, *extra):
    return cli("embed", manifest, *MODS, "--encoder", enc, "-o", out, *SMALL, *extra)


def test_embed_default_run(cli, cohort, atto3, tmp_path):
    out = tmp_path / "emb.h5"
    r = embed(cli, cohort, atto3, out)
    assert r.exit_code == 0, r
    assert r.stdout == ""
    t = read_table(str(out))
    assert list(t.case_id) == ["p00", "p01", "p02", "p03"]
    assert list(t.split) == ["train", "val", "test", "train"]
    assert t.values.shape == (4, 320) and t.columns[0] == "emb_0000" and t.columns[-1] == "emb_0319"
    assert np.isfinite(t.values).all()
    # the default embedding is LayerNorm-ed: each row has mean 0 and variance 1 (identity affine)
    assert np.allclose(t.values.mean(1), 0, atol=1e-4) and np.allclose(t.values.var(1), 1, atol=1e-2)
    with h5py.File(out) as f:
        assert f.attrs["radlens_schema"] == "case-table/1"
        params = json.loads(f.attrs["params"])
        inputs = json.loads(f.attrs["inputs"])
    assert params["arch"] == "convnextv2_atto" and params["preprocessing"]["crop"] == [32, 32, 16]
    assert params["preprocessing"]["spacing"] == [1.0, 1.0, 2.0] and params["layer"] == "final"
    assert len(inputs["encoder"]["sha256"]) == 64
    # same seed, same embeddings; a stage output has that stage's width
    r = embed(cli, cohort, atto3, tmp_path / "again.h5")
    assert np.array_equal(read_table(str(tmp_path / "again.h5")).values, t.values)
    r = embed(cli, cohort, atto3, tmp_path / "s2.h5", "--layer", "stage2", "--pool", "max", "--batch-size", "3")
    assert r.exit_code == 0, r
    assert read_table(str(tmp_path / "s2.h5")).values.shape == (4, 80)


def test_embed_matches_the_model_directly(cli, cohort, atto3, tmp_path):
    """The table holds the model's output for the preprocessed volumes, row by case_id."""
    from radlens_cli.encoders.checkpoints import load_encoder
    from radlens_cli.encoders.preprocess import CaseDataset, PreprocessConfig
    from radlens_cli.io.manifest import MaskSpec, read_manifest

    out = tmp_path / "e.csv"
    assert embed(cli, cohort, atto3, out, "--batch-size", "4").exit_code == 0
    t = read_table(str(out))
    ds = CaseDataset(read_manifest(cohort), PreprocessConfig(["t2", "dwi", "adc"], MaskSpec("gland"),
                                                             spacing=(1, 1, 2), crop=(32, 32, 16)))
    model, _ = load_encoder(atto3)
    with torch.no_grad():
        ref = model(torch.stack([ds[i]["volume"] for i in range(4)])).numpy()
    assert np.allclose(t.values, ref, atol=1e-5)


def test_embed_paths_with_spaces_pipe_and_parts(cli, spaced_tmp, atto3, tmp_path, monkeypatch):
    manifest = write_cohort(str(spaced_tmp / "my cohort"), n=3, dicom_first=True, split=False)
    enc = spaced_tmp / "my encoder.pt"
    shutil.copy(atto3, enc)
    r = embed(cli, manifest, enc, "-")
    assert r.exit_code == 0, r
    assert r.stdout_bytes[:8] == b"\x89HDF\r\n\x1a\n"
    info = cli("info", "--json", "-", input=r.stdout_bytes)
    assert info.exit_code == 0, info
    meta = json.loads(info.stdout)
    assert meta["schema"] == "case-table/1" and meta["datasets"]["values"] == [3, 320]
    assert meta["params"]["split_derived"] is True
    full = tmp_path / "full.h5"
    assert embed(cli, manifest, enc, full).exit_code == 0
    parts = []
    for k in range(2):
        p = tmp_path / f"part{k}.h5"
        r = embed(cli, manifest, enc, p, "--part-id", k, "--num-parts", 2)
        assert r.exit_code == 0, r
        parts.append(read_table(str(p)))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")  # an array task shards only when asked
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert embed(cli, manifest, enc, tmp_path / "slurm.h5", "--parts", "slurm").exit_code == 0
    assert list(read_table(str(tmp_path / "slurm.h5")).case_id) == list(parts[1].case_id)
    whole = read_table(str(full))
    ids = np.concatenate([p.case_id for p in parts])
    vals = np.concatenate([p.values for p in parts])
    assert sorted(ids) == sorted(whole.case_id)
    order = {c: i for i, c in enumerate(whole.case_id)}
    # other batch compositions: equal up to float rounding (bitwise only for the same batches)
    assert np.allclose(vals, whole.values[[order[c] for c in ids]], atol=1e-5)


def test_embed_resumes_from_cache_and_workers_agree(cli, cohort, atto3, tmp_path):
    cache = tmp_path / "cache dir"
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    assert embed(cli, cohort, atto3, a, "--cache-dir", cache).exit_code == 0
    assert len([f for f in os.listdir(cache) if f.endswith(".npz")]) == 4
    r = embed(cli, cohort, atto3, b, "--cache-dir", cache)
    assert r.exit_code == 0 and "2 of 2 batch(es) read" in r.stderr
    assert embed(cli, cohort, atto3, c, "-j", "2").exit_code == 0  # preprocessing in 2 workers
    ta, tb, tc = (read_table(str(p)).values for p in (a, b, c))
    assert np.array_equal(ta, tb) and np.array_equal(ta, tc)


def test_embed_from_fcmae_and_factory(cli, cohort, tmp_path):
    from tests.encoders.factories import atto3
    from tests.encoders.test_checkpoints import to_fcmae

    model = atto3()
    torch.save({"model": to_fcmae(model, with_final_norm=True)}, tmp_path / "fcmae.pth")
    r1 = embed(cli, cohort, tmp_path / "fcmae.pth", tmp_path / "f.h5", "--arch", "convnextv2_atto")
    r2 = embed(cli, cohort, "tests.encoders.factories:atto3", tmp_path / "g.h5")
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1, r2)
    assert np.allclose(read_table(str(tmp_path / "f.h5")).values,
                       read_table(str(tmp_path / "g.h5")).values, atol=1e-5)


def test_embed_bad_inputs(cli, tmp_path, atto3):
    manifest = write_cohort(str(tmp_path / "c"), n=2, zones=True)
    out = tmp_path / "out.h5"

    def run(*args, manifest=manifest, enc=atto3, mods=MODS):
        return cli("embed", manifest, *mods, "--encoder", enc, "-o", out, *SMALL, *args)

    def fails(r, code, *words):
        assert r.exit_code == code, r
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("radlens embed: error:") and "Traceback" not in r.stderr, r
        # the culprit is named in the error line, or (a failing case) in its own line before it
        named = [line] + [ln for ln in r.stderr.splitlines() if ln.startswith("radlens embed: failed:")]
        for w in words:
            assert any(w in ln for ln in named), (w, named)
        assert not out.exists()

    os.remove(tmp_path / "c" / "p01_adc.nii.gz")
    for extra in ((), ("-j", "2")):  # in the main process, then raised in a worker
        # p01 is named in one line, the batch goes on; exit 1 and no output (--keep-going writes p00)
        r = run(*extra, "-f")
        assert r.exit_code == 1 and "Traceback" not in r.stderr, r
        failed = [ln for ln in r.stderr.splitlines() if ln.startswith("radlens embed: failed:")]
        assert len(failed) == 1 and all(w in failed[0] for w in ("p01", "adc", "file not found", "p01_adc.nii.gz"))
        assert r.stderr.strip().splitlines()[-1].startswith("radlens embed: error: 1 of 2 case(s) failed (p01")
        assert not out.exists()
        assert run(*extra, "--keep-going").exit_code == 0
        assert list(read_table(str(out)).case_id) == ["p00"]
        out.unlink()
    manifest2 = write_cohort(str(tmp_path / "d"), n=2, zones=True)
    fails(run(manifest=manifest2, mods=["--modalities", "t2,dwi,adc", "--mask", "gland:3"]), 1,
          "label(s) 3 absent", "p00_gland.nii.gz")
    fails(run(manifest=manifest2, mods=["--modalities", "t2,flair", "--mask", "gland"]), 2,
          "unknown modality column(s) flair")
    fails(run("--arch", "convnextv2_femto", manifest=manifest2), 1, "convnextv2_atto", "femto")
    sd = torch.load(atto3, weights_only=True)["state_dict"]
    del sd["stages.3.1.grn.gamma"]
    torch.save(sd, tmp_path / "broken.pt")
    fails(run(manifest=manifest2, enc=tmp_path / "broken.pt"), 1, "lacks 1 encoder weight", "stages.3.1.grn.gamma",
          "broken.pt")
    fails(run(manifest=manifest2, mods=["--modalities", "t2,adc", "--mask", "gland"]), 1,
          "3 input channel(s)", "gives 2")
    fails(run("--part-id", "2", "--num-parts", "2", manifest=manifest2), 2, "--part-id 2")
    fails(run(manifest=manifest2, enc=tmp_path / "nothing.pt"), 1, "not found", "nothing.pt")
    fails(run("--layer", "stage9", manifest=manifest2), 2, "--layer")
    r = cli("embed", manifest2, *MODS, "--encoder", atto3, "-o", tmp_path / "no such dir" / "e.h5", *SMALL)
    assert r.exit_code == 1 and "output folder does not exist" in r.stderr
    zones = tmp_path / "zones.h5"  # a union of zone labels is a valid ROI
    r = cli("embed", manifest2, "--modalities", "t2,dwi,adc", "--mask", "gland:1+2", "--encoder", atto3,
            "-o", zones, *SMALL)
    assert r.exit_code == 0 and read_table(str(zones)).values.shape == (2, 320), r
    out.write_bytes(b"precious")
    r = run(manifest=manifest2)
    assert r.exit_code == 1 and "output exists" in r.stderr and out.read_bytes() == b"precious"


def test_preprocessing_defaults_come_from_the_checkpoint(cli, cohort, tmp_path):
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    enc = tmp_path / "ft.pt"
    save_radlens_checkpoint(str(enc), build_encoder("atto", 3), "atto", 3,
                            {"modalities": ["t2", "dwi", "adc"], "mask": "gland", "spacing": [1.5, 1.5, 2.5],
                             "crop": [16, 48, 32], "norm": "percentile"})
    out = tmp_path / "e.h5"
    r = cli("embed", cohort, *MODS, "--encoder", enc, "-o", out)
    assert r.exit_code == 0, r
    with h5py.File(out) as f:
        pre = json.loads(f.attrs["params"])["preprocessing"]
    # a record without a version holds the crop as D,H,W (before crops were x,y,z): read as such
    assert pre["crop"] == [32, 48, 16] and pre["crop_order"] == "x,y,z" and pre["version"] == 2
    assert pre["spacing"] == [1.5, 1.5, 2.5] and pre["norm"] == "percentile"
    r = cli("embed", cohort, "--modalities", "adc,dwi,t2", "--mask", "gland", "--encoder", enc, "--crop", "32,32,16",
            "-o", tmp_path / "f.h5")
    assert r.exit_code == 0 and "channel order matters" in r.stderr
    with h5py.File(tmp_path / "f.h5") as f:
        assert json.loads(f.attrs["params"])["preprocessing"]["crop"] == [32, 32, 16]
    r = cli("embed", cohort, *MODS, "--encoder", enc, "--crop", "32,32,8", "-o", tmp_path / "g.h5")
    assert r.exit_code == 2 and "at least 16 voxels" in r.stderr


def test_a_finetune_checkpoint_s_run_and_epoch_reach_compare_s_record(cli, cohort, tmp_path):
    """embed records a `radlens finetune` checkpoint's run and epoch (None for other encoders),
    decode carries them on and compare's checkpoint identity holds them (report orders by them)."""
    from radlens_cli import provenance
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    ft = {"task": "regress", "target": "volume_ml", "run": "0123abcd", "epoch": 3, "metric": "mse"}
    save_radlens_checkpoint(str(tmp_path / "ft-e3.pt"), build_encoder("convnextv2_atto", 3), "convnextv2_atto", 3,
                            None, extra={"finetune": ft})
    assert embed(cli, cohort, tmp_path / "ft-e3.pt", tmp_path / "emb.h5").exit_code == 0
    with h5py.File(tmp_path / "emb.h5") as f:
        params = json.loads(f.attrs["params"])
    assert params["finetune"] == {"task": "regress", "target": "volume_ml", "run": "0123abcd", "epoch": 3,
                                  "best_epoch": None}
    attrs = {"params": json.dumps({"encoder_finetune": params["finetune"]})}
    assert provenance.checkpoint_identity("-", attrs)["finetune"]["epoch"] == 3
    assert "finetune" not in provenance.checkpoint_identity("-", {"params": "{}"})  # decoders of older embeddings
