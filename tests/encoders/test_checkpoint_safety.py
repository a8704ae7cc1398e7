"""Reading a checkpoint never runs code from it: weights-only everywhere, an explicit opt-in."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from radlens_cli.encoders.checkpoints import load_encoder, read_checkpoint_ex
from radlens_cli.encoders.convnextv2 import build_encoder
from radlens_cli.errors import RadlensError
from tests.encoders.conftest import SMALL
from tests.encoders.factories import Marker, TrainRecipe
from tests.commands.test_finetune import base_args, build_cohort

MODS = ["--modalities", "t2,dwi,adc", "--mask", "gland"]


def _atto(chans=3, seed=0):
    torch.manual_seed(seed)
    return build_encoder("atto", chans).eval()


@pytest.fixture(scope="module")
def ft_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("safety")
    return {"manifest": build_cohort(root / "cases", n=4), "root": root}


def _evil(path: Path, marker: Path, chans=3) -> Path:
    """A plausible checkpoint (real weights) whose unpickling would create `marker`."""
    torch.save({"model": _atto(chans).state_dict(), "epoch": 3, "hook": Marker(marker)}, path)
    return path


def _refused(r, marker, path):
    assert r.exit_code == 1, r
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] and "--trust-checkpoint" in lines[0] and "posix.system" in lines[0]
    assert not marker.exists()


def test_every_reader_refuses_a_code_running_checkpoint(cli, cohort, ft_cohort, tmp_path):
    marker = tmp_path / "MARKER"
    evil3 = _evil(tmp_path / "evil3.pt", marker)
    evil1 = _evil(tmp_path / "evil1.pt", marker, chans=1)
    _refused(cli("embed", cohort, *MODS, "--encoder", evil3, "-o", tmp_path / "e.h5", *SMALL), marker, evil3)
    assert not (tmp_path / "e.h5").exists()
    c = {"manifest": ft_cohort["manifest"], "encoder": evil1}
    _refused(cli("finetune", *base_args(c, epochs=1), "-o", tmp_path / "f.pt"), marker, evil1)
    # library readers: the encoder loader and the finetune-checkpoint loader (they name the
    # parameter; the command wrapper shows it as --trust-checkpoint, as checked above)
    from radlens_cli.encoders.training.finetuned import load_finetuned

    for fn in (load_encoder, load_finetuned):
        with pytest.raises(RadlensError, match="refused.*pass trust=True to load it anyway"):
            fn(str(evil1))
    # a resume state planted beside the output is not unpickled either
    good = tmp_path / "good1.pt"
    torch.save(_atto(1).state_dict(), good)
    c = {"manifest": ft_cohort["manifest"], "encoder": good}
    out = tmp_path / "ft.pt"
    _evil(Path(f"{out}.state"), marker, chans=1)
    r = cli("finetune", *base_args(c, epochs=1), "-o", out)
    assert r.exit_code == 1 and "resume state" in r.stderr and not marker.exists(), r
    # `info` describes model files weights-only: refused too, and so is `layers`
    r = cli("info", evil1)
    assert r.exit_code == 1 and "refused" in r.stderr and "--trust-checkpoint" in r.stderr and not marker.exists(), r
    _refused(cli("layers", evil3), marker, evil3)
    # the refusal holds for the legacy (non-zip) torch.save format too
    legacy = tmp_path / "legacy.pt"
    torch.save({"model": _atto().state_dict(), "hook": Marker(marker)}, legacy,
               _use_new_zipfile_serialization=False)
    with pytest.raises(RadlensError, match="refused"):
        load_encoder(str(legacy))
    assert not marker.exists()


def test_opt_in_loads_a_trusted_training_checkpoint_and_records_it(cli, cohort, tmp_path):
    model = _atto(seed=5)
    path = tmp_path / "recipe.pt"
    torch.save({"model": model.state_dict(), "recipe": TrainRecipe(lr=0.1)}, path)
    r = cli("embed", cohort, *MODS, "--encoder", path, "-o", tmp_path / "no.h5", *SMALL)
    assert r.exit_code == 1 and "TrainRecipe" in r.stderr and "--trust-checkpoint" in r.stderr, r
    r = cli("embed", cohort, *MODS, "--encoder", path, "-o", tmp_path / "yes.h5", *SMALL, "--trust-checkpoint")
    assert r.exit_code == 0, r
    assert "trusted checkpoint" in r.stderr
    with h5py.File(tmp_path / "yes.h5") as f:
        params = json.loads(f.attrs["params"])
    assert params["trust_checkpoint"] is True and params["checkpoint_fully_unpickled"] is True
    # the weights are the file's: equal to embedding with a plain state dict of the same model
    plain = tmp_path / "plain.pt"
    torch.save(model.state_dict(), plain)
    r = cli("embed", cohort, *MODS, "--encoder", plain, "-o", tmp_path / "plain.h5", *SMALL, "--trust-checkpoint")
    assert r.exit_code == 0, r
    from radlens_cli.io.tables import read_table

    assert np.array_equal(read_table(str(tmp_path / "yes.h5")).values, read_table(str(tmp_path / "plain.h5")).values)
    with h5py.File(tmp_path / "plain.h5") as f:  # opt-in given, not needed: recorded as such
        params = json.loads(f.attrs["params"])
    assert params["trust_checkpoint"] is True and params["checkpoint_fully_unpickled"] is False


def _assert_weights_only(path):
    obj, full = read_checkpoint_ex(str(path))
    assert full is False
    model, info = load_encoder(str(path))
    assert info.trusted is False
    return obj, model, info


def test_radlens_fcmae_and_lightning_checkpoints_load_weights_only(cli, tmp_path):
    # radlens's own: init-encoder's output
    r = cli("init-encoder", "--arch", "atto", "--in-chans", "2", "-o", tmp_path / "init.pt")
    assert r.exit_code == 0, r
    _assert_weights_only(tmp_path / "init.pt")
    r = cli("info", "--json", tmp_path / "init.pt")
    assert r.exit_code == 0, r
    params = json.loads(r.stdout)["params"]
    assert (params["kind"], params["arch"], params["in_chans"]) == ("radlens checkpoint", "convnextv2_atto", 2)
    ref = _atto()
    x = torch.randn(1, 3, 32, 32, 32)
    # ProFound / ConvNeXt-V2 FCMAE style: model, optimizer state, scaler, epoch, argparse args
    from tests.encoders.test_checkpoints import randomised, to_fcmae

    ref = randomised()
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-3)
    ref(x).sum().backward()
    opt.step()
    args = argparse.Namespace(model="convnextv2_tiny", input_size=[96, 96, 96], mask_ratio=0.6,
                              blr=np.float64(1.5e-4), output_dir=Path("/runs/fcmae"))
    fcmae = tmp_path / "fcmae.pt"
    torch.save({"model": to_fcmae(ref), "optimizer": opt.state_dict(), "epoch": 799,
                "scaler": {"scale": 65536.0, "growth_factor": 2.0, "_growth_tracker": 12}, "args": args}, fcmae)
    obj, model, info = _assert_weights_only(fcmae)
    assert info.source == "fcmae" and obj["args"].mask_ratio == 0.6
    ref_eval = ref.eval()
    with torch.no_grad():
        expect = ref_eval.forward_features(x)[-1]
        got = model.forward_features(x)[-1]
    assert torch.allclose(got, expect, atol=1e-4)
    # Lightning style: `state_dict` with a `model.` prefix beside loops, callbacks, hparams
    lit = tmp_path / "lightning.ckpt"
    torch.save({"epoch": 4, "global_step": 120, "pytorch-lightning_version": "2.4.0",
                "state_dict": {f"model.{k}": v for k, v in ref.state_dict().items()},
                "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 5}}}},
                "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.3),
                                                                         "dirpath": "/runs/ckpt"}},
                "optimizer_states": [opt.state_dict()], "lr_schedulers": [{"last_epoch": 4, "_step_count": 5}],
                "hparams_name": "kwargs", "hyper_parameters": {"lr": np.float32(1e-3), "dims": (1, 2)}}, lit)
    obj, model, info = _assert_weights_only(lit)
    with torch.no_grad():
        assert torch.allclose(model(x), ref_eval(x), atol=1e-5)
    for path, kind in ((fcmae, "FCMAE"), (lit, "Lightning")):
        r = cli("info", "--json", path)
        assert r.exit_code == 0, r
        params = json.loads(r.stdout)["params"]
        assert params["kind"].startswith(kind) and params["arch"] == "convnextv2_atto" and params["in_chans"] == 3
