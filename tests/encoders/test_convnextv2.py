"""The 3D ConvNeXt-V2: sizes from the design facts, GRN/LayerNorm against numpy, shapes."""

import numpy as np
import pytest
import torch

from radlens_cli.encoders.convnextv2 import ARCHS, GRN, LayerNorm, build_encoder, extract_embedding


def count_from_design(in_chans, depths, dims):
    """Parameters implied by DESIGN.md's architecture facts, counted layer by layer."""
    n = in_chans * dims[0] * 4 ** 3 + dims[0] + 2 * dims[0]  # stem conv k4 + channels-first LN
    for i in range(3):
        k = 2 if i < 2 else 1
        n += 2 * dims[i] + dims[i] * dims[i + 1] * k ** 3 + dims[i + 1]  # LN + conv
    for depth, d in zip(depths, dims):
        per_block = (d * 7 ** 3 + d) + 2 * d + (d * 4 * d + 4 * d) + 2 * 4 * d + (4 * d * d + d)
        n += depth * per_block
    return n + 2 * dims[-1]  # final LayerNorm


@pytest.mark.parametrize("arch", list(ARCHS))
def test_parameter_count_matches_design(arch):
    depths, dims = ARCHS[arch]
    with torch.device("meta"):
        model = build_encoder(arch, 3)
    assert sum(p.numel() for p in model.parameters()) == count_from_design(3, depths, dims)


def test_family_and_state_dict_names():
    assert ARCHS["convnextv2_tiny"] == ((3, 3, 9, 3), (96, 192, 384, 768))
    assert ARCHS["convnextv2_base"][0] == (3, 3, 27, 3) and ARCHS["convnextv2_huge"][1][-1] == 2816
    with torch.device("meta"):
        sd = build_encoder("tiny", 3).state_dict()
    assert tuple(sd["downsample_layers.0.0.weight"].shape) == (96, 3, 4, 4, 4)
    assert tuple(sd["downsample_layers.3.1.weight"].shape) == (768, 384, 1, 1, 1)
    assert tuple(sd["downsample_layers.1.1.weight"].shape) == (192, 96, 2, 2, 2)
    assert tuple(sd["stages.2.8.grn.gamma"].shape) == (1, 1, 1, 1, 4 * 384)
    assert tuple(sd["stages.0.0.dwconv.weight"].shape) == (96, 1, 7, 7, 7)
    assert {"norm.weight", "stages.3.2.pwconv2.bias", "stages.1.0.norm.weight"} <= set(sd)
    assert not any(k.startswith("head") for k in sd)


def test_grn_and_layernorm_against_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5, 6))
    grn = GRN(6)
    g, b = rng.normal(size=6), rng.normal(size=6)
    grn.gamma.data = torch.tensor(g).view(1, 1, 1, 1, 6)
    grn.beta.data = torch.tensor(b).view(1, 1, 1, 1, 6)
    gx = np.sqrt((x ** 2).sum(axis=(1, 2, 3), keepdims=True))
    nx = gx / (gx.mean(axis=-1, keepdims=True) + 1e-6)
    ref = g * (x * nx) + b + x
    assert np.allclose(grn.double()(torch.tensor(x)).detach().numpy(), ref, atol=1e-10)
    assert grn.gamma.shape == (1, 1, 1, 1, 6) and float(GRN(4).gamma.detach().abs().sum()) == 0.0

    ln = LayerNorm(3, eps=1e-6, data_format="channels_first")
    y = rng.normal(size=(2, 3, 4, 5, 6)).astype(np.float32)
    mu, var = y.mean(1, keepdims=True), y.var(1, keepdims=True)
    assert np.allclose(ln(torch.tensor(y)).detach().numpy(), (y - mu) / np.sqrt(var + 1e-6), atol=1e-5)


def test_stage_shapes_and_embedding():
    torch.manual_seed(0)
    model = build_encoder("atto", 2).eval()
    x = torch.randn(2, 2, 16, 32, 32)
    feats = model.forward_features(x)
    assert [tuple(f.shape) for f in feats] == [(2, 40, 4, 8, 8), (2, 80, 2, 4, 4), (2, 160, 1, 2, 2),
                                               (2, 320, 1, 2, 2)]
    emb = model(x)
    last = feats[-1].mean(dim=(2, 3, 4))
    ref = torch.nn.functional.layer_norm(last, (320,), model.norm.weight, model.norm.bias, 1e-6)
    assert torch.allclose(emb, ref, atol=1e-6)
    s2 = extract_embedding(model, x, "stage2", "max")
    assert torch.equal(s2, feats[1].amax(dim=(2, 3, 4)))
    # one sample's embedding does not depend on the rest of the batch
    assert torch.allclose(model(x[:1]), emb[:1], atol=1e-5)
