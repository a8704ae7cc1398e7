"""Checkpoint loading: FCMAE (ProFound) layout written here, radlens, TorchScript, factory, errors."""

import argparse
import itertools

import numpy as np
import pytest
import torch

from radlens_cli.encoders.checkpoints import load_encoder, save_radlens_checkpoint
from radlens_cli.encoders.convnextv2 import build_encoder
from radlens_cli.errors import RadlensError


def randomised(arch="atto", in_chans=3, seed=0, final_norm=True):
    """A model whose every parameter (GRN and LayerNorms included) is non-trivial."""
    torch.manual_seed(seed)
    model = build_encoder(arch, in_chans).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("gamma", "beta")) or "norm" in name or name.endswith("bias"):
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if name.endswith("norm.weight") else 0.0))
        if not final_norm:
            model.norm.weight.fill_(1.0)
            model.norm.bias.zero_()
    return model


def sparse_kernel(w: torch.Tensor) -> torch.Tensor:
    """Dense Conv3d weight -> MinkowskiEngine kernel, offsets with the first axis fastest."""
    w = w.detach().numpy()
    out_c, in_c, k = w.shape[0], w.shape[1], w.shape[2]
    if in_c == 1 and k == 7:  # depthwise: (k^3, dim)
        kern = np.zeros((k ** 3, out_c), np.float32)
        for a, b, c in itertools.product(range(k), repeat=3):
            kern[a + k * b + k * k * c] = w[:, 0, a, b, c]
        return torch.tensor(kern)
    if k == 1:  # MinkowskiEngine stores kernel-volume-1 weights as (in, out)
        return torch.tensor(w[:, :, 0, 0, 0].T.copy())
    kern = np.zeros((k ** 3, in_c, out_c), np.float32)
    for a, b, c in itertools.product(range(k), repeat=3):
        kern[a + k * b + k * k * c] = w[:, :, a, b, c].T
    return torch.tensor(kern)


def to_fcmae(model, with_final_norm=False, decoder_dim=16) -> dict:
    """The state dict of ProFound's FCMAE(SparseConvNeXtV2 encoder, decoder) for `model`'s weights."""
    out = {}
    for k, v in model.state_dict().items():
        parts = k.split(".")
        if parts[0] == "norm":
            if with_final_norm:
                out[f"encoder.{k}"] = v.clone()
            continue
        if k.startswith("downsample_layers.0."):  # the stem stays dense in FCMAE
            out[f"encoder.{k}"] = v.clone()
        elif parts[0] == "downsample_layers" and parts[2] == "0":
            out[f"encoder.downsample_layers.{parts[1]}.0.ln.{parts[3]}"] = v.clone()
        elif parts[0] == "downsample_layers":
            base = f"encoder.downsample_layers.{parts[1]}.1"
            if parts[3] == "weight":
                out[f"{base}.kernel"] = sparse_kernel(v)
            else:
                out[f"{base}.bias"] = v.clone().view(1, -1)
        else:
            base = "encoder." + ".".join(parts[:3])
            layer, what = parts[3], parts[4]
            if layer == "dwconv":
                out[f"{base}.dwconv.{'kernel' if what == 'weight' else 'bias'}"] = (
                    sparse_kernel(v) if what == "weight" else v.clone().view(1, -1))
            elif layer == "norm":
                out[f"{base}.norm.ln.{what}"] = v.clone()
            elif layer in ("pwconv1", "pwconv2"):
                out[f"{base}.{layer}.linear.{what}"] = v.clone()
            elif layer == "grn":
                out[f"{base}.grn.{what}"] = v.clone().view(1, -1)
            else:
                raise AssertionError(k)
    out["mask_token"] = torch.zeros(1, decoder_dim, 1, 1, 1)
    out["proj.weight"] = torch.randn(decoder_dim, model.dims[-1], 1, 1, 1)
    out["proj.bias"] = torch.zeros(decoder_dim)
    out["decoder.0.dwconv.weight"] = torch.randn(decoder_dim, 1, 7, 7, 7)
    out["decoder.0.grn.gamma"] = torch.zeros(1, 1, 1, 1, 4 * decoder_dim)
    out["pred.weight"] = torch.randn(4 ** 3 * 3, decoder_dim, 1, 1, 1)
    return out


@pytest.fixture(scope="module")
def x():
    torch.manual_seed(1)
    return torch.randn(2, 3, 16, 32, 32)


@pytest.mark.parametrize("with_final_norm", [False, True])
def test_fcmae_checkpoint_gives_same_embedding(tmp_path, x, with_final_norm):
    model = randomised(final_norm=with_final_norm)
    path = tmp_path / "fcmae.pth"
    torch.save({"model": to_fcmae(model, with_final_norm), "epoch": 799,
                "args": argparse.Namespace(model="convnextv2_atto", mask_ratio=0.6)}, path)
    loaded, info = load_encoder(str(path))
    assert info.arch == "convnextv2_atto" and info.in_chans == 3 and info.source == "fcmae"
    assert info.embed_dim == 320
    assert set(info.absent_optional) == (set() if with_final_norm else {"norm.weight", "norm.bias"})
    assert any(k.startswith("decoder") for k in info.dropped) and "mask_token" in info.dropped
    with torch.no_grad():
        ref, got = model(x), loaded(x)
        assert (ref - got).abs().max().item() < 1e-6
        for a, b in zip(model.forward_features(x), loaded.forward_features(x)):
            assert (a - b).abs().max().item() < 1e-5


def test_sparse_kernel_layout_is_first_axis_fastest():
    """The loader's reshape maps kernel row a + k*b + k*k*c to weight[..., a, b, c]."""
    from radlens_cli.encoders.checkpoints import remap_sparse

    k, cin, cout = 2, 3, 4
    kern = torch.arange(k ** 3 * cin * cout, dtype=torch.float32).view(k ** 3, cin, cout)
    out = remap_sparse({"downsample_layers.1.1.kernel": kern},
                       {"downsample_layers.1.1.weight": (cout, cin, k, k, k)})["downsample_layers.1.1.weight"]
    for o, i, a, b, c in itertools.product(range(cout), range(cin), range(k), range(k), range(k)):
        assert out[o, i, a, b, c] == kern[a + k * b + k * k * c, i, o]


def test_missing_weight_is_an_error(tmp_path):
    sd = to_fcmae(randomised())
    del sd["encoder.stages.2.3.pwconv1.linear.weight"]
    path = tmp_path / "broken.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(RadlensError, match=r"lacks 1 encoder weight.*stages\.2\.3\.pwconv1\.weight"):
        load_encoder(str(path))


def test_other_architecture_is_an_error(tmp_path, x):
    path = tmp_path / "atto.pt"
    torch.save(randomised().state_dict(), path)
    with pytest.raises(RadlensError, match="convnextv2_atto.*not arch convnextv2_femto"):
        load_encoder(str(path), arch="convnextv2_femto")
    with pytest.raises(RadlensError, match="3 input channel"):
        load_encoder(str(path), in_chans=2)
    ok, info = load_encoder(str(path), arch="atto")
    assert info.source == "state_dict"


def test_radlens_checkpoint_records_arch_and_preprocessing(tmp_path, x, capsys):
    model = randomised()
    path = str(tmp_path / "r.pt")
    save_radlens_checkpoint(path, model, "atto", 3, {"spacing": [1, 1, 2], "norm": "percentile"},
                            extra={"head": {"w": torch.zeros(2)}})
    with pytest.raises(RadlensError, match="exists"):
        save_radlens_checkpoint(path, model, "atto", 3, None)
    loaded, info = load_encoder(path)
    assert info.source == "radlens" and info.preprocessing["norm"] == "percentile"
    assert torch.equal(loaded(x), model(x))
    with pytest.raises(RadlensError, match="not arch convnextv2_tiny"):
        load_encoder(path, arch="tiny")
    # a DDP-wrapped state dict with a stray entry: loads, and the stray entry is reported
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    sd["module.extra.scale"] = torch.ones(1)
    torch.save(sd, tmp_path / "ddp.pt")
    capsys.readouterr()
    _, info = load_encoder(str(tmp_path / "ddp.pt"))
    assert info.unexpected == ["extra.scale"] and "extra.scale" in capsys.readouterr().err


def test_torchscript_and_factory(tmp_path, x):
    model = randomised()
    ts = tmp_path / "enc.ts"
    torch.jit.trace(model, x[:1]).save(str(ts))
    loaded, info = load_encoder(str(ts))
    assert info.source == "torchscript"
    assert torch.allclose(loaded(x), model(x), atol=1e-5)

    from tests.encoders.factories import atto3

    fac, info = load_encoder("tests.encoders.factories:atto3")
    assert info.source == "factory" and info.embed_dim == 320
    assert torch.equal(fac(x), atto3().eval()(x))
    with pytest.raises(RadlensError, match="no callable nothing"):
        load_encoder("tests.encoders.factories:nothing")


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(RadlensError, match="cannot read checkpoint"):
        load_encoder(str(bad))
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "opt.pt")
    with pytest.raises(RadlensError, match="not an encoder checkpoint"):
        load_encoder(str(tmp_path / "opt.pt"))
    with pytest.raises(RadlensError, match="not found"):
        load_encoder(str(tmp_path / "missing.pt"))
