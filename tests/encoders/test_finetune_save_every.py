"""`finetune --save-every K`: intermediate checkpoints of one run, each usable by `embed`."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tests.commands.test_finetune import base_args, build_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftsave")
    manifest = build_cohort(root / "cases", n=10)
    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder

    torch.manual_seed(0)
    save_radlens_checkpoint(str(root / "pre.pt"), build_encoder("atto", 1), "convnextv2_atto", 1, None)
    return {"manifest": manifest, "encoder": root / "pre.pt", "root": root}


def test_save_every_writes_epoch_checkpoints_that_embed_reads(cli, cohort, tmp_path):
    import pandas as pd

    out = tmp_path / "ft volume.pt"
    met = tmp_path / "m.csv"
    r = cli("finetune", *base_args(cohort, "regress", "vol_ml", epochs=3), "--save-every", "2",
            "--metrics", met, "-o", out)
    assert r.exit_code == 0, r.stderr
    names = sorted(p for p in os.listdir(tmp_path) if p.endswith(".pt"))
    assert names == ["ft volume-epoch002.pt", "ft volume.pt"]  # epochs 2 (and 4, 6 ... within --epochs)
    assert not [p for p in os.listdir(tmp_path) if ".part" in p or p.endswith(".state")]
    rows = pd.read_csv(met)
    metas = {}
    for e in (2,):
        obj = torch.load(tmp_path / f"ft volume-epoch{e:03d}.pt", map_location="cpu", weights_only=True)
        meta = obj["finetune"]
        metas[e] = (meta, obj["state_dict"])
        assert meta["epoch"] == e and meta["intermediate"] is True
        assert meta["task"] == "regress" and meta["target"] == "vol_ml"
        val = rows[(rows["epoch"] == e) & (rows["split"] == "val")].iloc[0]
        assert meta["val"]["mse"] == pytest.approx(val["mse"], rel=1e-6)
        assert meta["val"]["loss"] == pytest.approx(val["loss"], rel=1e-6)
        assert [h["epoch"] for h in meta["metrics"] if h["split"] == "train"] == list(range(1, e + 1))
    assert len(metas[2][0]["run"]) == 16
    final = torch.load(out, map_location="cpu", weights_only=True)
    # the final file holds the best epoch on val; epoch 2's file that epoch's own weights
    same = all(torch.equal(final["state_dict"][k], v) for k, v in metas[2][1].items())
    assert same == (final["finetune"]["best_epoch"] == 2)
    # every intermediate checkpoint embeds like any radlens checkpoint (architecture and preprocessing recorded)
    from radlens_cli.io.tables import read_table

    r = cli("embed", cohort["manifest"], "--modalities", "t2", "--mask", "gland", "--encoder",
            tmp_path / "ft volume-epoch002.pt", "--device", "cpu", "-o", tmp_path / "emb.h5")
    assert r.exit_code == 0, r.stderr
    emb = read_table(str(tmp_path / "emb.h5")).values
    assert emb.shape == (10, 320) and np.isfinite(emb).all()
    # a second run refuses to overwrite them without --force, naming the file
    os.unlink(out)
    r = cli("finetune", *base_args(cohort, "regress", "vol_ml", epochs=3), "--save-every", "2", "-o", out)
    assert r.exit_code == 1 and "output exists: " in r.stderr and "ft volume-epoch002.pt" in r.stderr
    r = cli("finetune", *base_args(cohort, "regress", "vol_ml", epochs=3), "--save-every", "-1", "-o", out)
    assert r.exit_code == 2
