"""Radiomic concept maps on a phantom with a feature planted in a known sub-region.

The phantom: 240 volumes of noise; the ROI is the 16^3 box and its eight 8^3 octants are
sub-regions. Octant S carries a per-case intensity level, and so does every other octant
(independent levels): S and T are two of them. The radiomic table holds first-order means: `S_mean` (planted in S), `T_mean`
(planted in T) and a column of noise. The encoder is a seeded conv net whose embedding keeps
where things are (conv - ReLU - 2x2x2 average pooling - flatten; the pooling cells are the
octants), so a decoder can read S's mean from S's dimensions: the test checks that the
concept map (lens -> decoded feature -> attribution) recovers what the encoder reads. The lens (fit-share, decode) runs as the commands run it, the
decoder goes through DEC.h5/SHARE.h5, and the concept map of `S_mean` must put >= 0.6 of its
mass into S and >= 3x S's share of the ROI (1/8); `T_mean`'s map stays below half of both.
"""

import numpy as np
import pytest
import torch

from radlens_cli.io.tables import CaseTable

torch.set_num_threads(1)

N, SIDE = 240, 16
ROI = (slice(0, 16),) * 3
S = (slice(0, 8),) * 3
T = (slice(8, 16), slice(8, 16), slice(0, 8))


class LocalEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 8, 3, padding=1)
        self.pool = torch.nn.AdaptiveAvgPool3d(2)

    def forward(self, x):
        return self.pool(torch.relu(self.conv(x))).flatten(1)


def phantom(seed=0):
    rng = np.random.default_rng(seed)
    vols = rng.normal(0, 1, (N, 1, SIDE, SIDE, SIDE)).astype(np.float32)
    # every octant gets its own independent per-case level, so reading S means ignoring the others
    levels = rng.uniform(0, 2, (N, 2, 2, 2)).astype(np.float32)
    vols[:, 0] += np.repeat(np.repeat(np.repeat(levels, 8, 1), 8, 2), 8, 3)
    rad = np.stack([vols[(slice(None), 0) + S].mean((1, 2, 3)), vols[(slice(None), 0) + T].mean((1, 2, 3)),
                    rng.normal(0, 1, N)], 1)
    return vols, rad


_BUILT = {}


@pytest.fixture(scope="module", params=["symmetric", "calibrated"])
def lens(request, tmp_path_factory):
    """The lens of `request.param` on the phantom (built once per module)."""
    if request.param not in _BUILT:
        _BUILT[request.param] = build_lens(request.param, tmp_path_factory)
    return _BUILT[request.param]


@pytest.fixture(scope="module")
def sym(tmp_path_factory):
    """The symmetric lens (the default) on the phantom."""
    if "symmetric" not in _BUILT:
        _BUILT["symmetric"] = build_lens("symmetric", tmp_path_factory)
    return _BUILT["symmetric"]


def build_lens(method, tmp_path_factory):
    from radlens_cli.encoders.infer import Embedder
    from radlens_cli.encoders.info import EncoderInfo
    from radlens_cli.io.formats.decoder import load_decoder, save_decoder
    from radlens_cli.io.formats.share import load_share, save_share
    from radlens_cli.lens.share import ShareModel
    from radlens_cli.lens.steps import decode, fit_share

    folder = tmp_path_factory.mktemp(f"concept_{method}")
    torch.manual_seed(3)
    enc = LocalEncoder().eval()
    vols, rad = phantom()
    with torch.no_grad():
        X = enc(torch.from_numpy(vols)).double().numpy()
    ids = np.array([f"c{i:02d}" for i in range(N)], dtype=object)
    split = np.array((["train"] * 4 + ["test"] * 2)[:6] * (N // 6), dtype=object)
    emb = CaseTable(ids, X, [f"emb_{j:04d}" for j in range(X.shape[1])], split=split)
    emb.path = "emb"
    rad_t = CaseTable(ids, rad, ["original_firstorder_S_mean", "original_firstorder_T_mean",
                                 "original_firstorder_noise"], split=split)
    rad_t.path = "rad"
    share = fit_share(emb, rad_t, seed=0, method=method, hidden=None if method == "symmetric" else 256)
    save_share(share, str(folder / "share.h5"))
    res = decode(share, emb, rad_t)
    save_decoder(res, str(folder / "dec.h5"))
    embedder = Embedder(enc, EncoderInfo(spec="local", source="factory", arch="custom"), "local", "final", "mean",
                        torch.device("cpu"))
    return {"share": ShareModel.from_record(load_share(str(folder / "share.h5"))),
            "dec": load_decoder(str(folder / "dec.h5"), bulk=("train/Z",)), "method": method,
            "emb": emb, "rad": rad_t, "embedder": embedder, "vols": vols, "enc": enc, "folder": folder}


def mass_in(m, region):
    m = np.clip(m, 0, None)
    return float(m[region].sum() / m.sum())


@pytest.mark.parametrize("method", ["integrated-gradients", "gradient"])
def test_planted_feature_map_concentrates_in_its_sub_region(lens, method):
    from radlens_cli.saliency.concept import ConceptMaps, readout_layers

    cols = ["original_firstorder_S_mean", "original_firstorder_T_mean"]
    dec = lens["dec"]
    r2 = dict(zip(dec.columns, dec.resplit["r2"].mean(axis=0) if dec.resplit is not None else dec.r2))
    assert r2[cols[0]] > 0.5 and r2[cols[1]] > 0.5  # both are read well: the maps mean something
    readout = readout_layers(lens["share"], dec, cols, lens["emb"])
    cm = ConceptMaps(lens["embedder"], readout, method)
    share_of_roi = 1 / 8
    planted, other = [], []
    test_cases = [i for i in range(N) if i % 6 >= 4]
    for i in test_cases[:6]:
        maps = cm.maps(lens["vols"][i])
        planted.append(mass_in(maps[cols[0]][0], S))
        other.append(mass_in(maps[cols[1]][0], S))
        # the decoded value is decode's prediction for this case (same lens, same numbers)
    planted, other = np.array(planted), np.array(other)
    assert (planted >= 0.6).all() and (planted >= 3 * share_of_roi).all(), planted
    assert (other < 0.3).all() and (other < 1.5 * share_of_roi).all(), other


def test_decoded_value_is_decodes_prediction(lens):
    """The torch readout gives what decode predicted for the eval cases (stored in DEC.h5);
    for the symmetric lens, re-split 0's decoder gives DEC.h5's prediction and the decoded
    feature is the mean over the re-splits' predictions."""
    from radlens_cli.io.formats.decoder import load_decoder
    from radlens_cli.saliency.concept import ConceptMaps, readout_layers

    dec = lens["dec"]
    full = load_decoder(dec.path, bulk=("eval/prediction",))
    readout = readout_layers(lens["share"], dec, list(dec.columns), lens["emb"])
    cm = ConceptMaps(lens["embedder"], readout)
    rows = {c: k for k, c in enumerate(lens["emb"].case_id)}
    idx = [rows[c] for c in dec.eval_case_id[:4]]
    with torch.no_grad():
        got = cm.decoded(torch.from_numpy(lens["vols"][idx])).numpy()
    if lens["method"] == "symmetric":
        per_split = readout.lens.predict(lens["emb"].values[idx])         # (R, 4, p), numpy
        assert per_split.shape[0] == 10
        assert np.allclose(per_split[0], full.bulk["eval/prediction"][:4], atol=1e-4)
        assert np.allclose(got, per_split.mean(axis=0), atol=1e-4)      # float32 encoder vs float64 table
    else:
        assert np.allclose(got, full.bulk["eval/prediction"][:4], atol=1e-4)


def _symmetric_decode_of(lens, X, name):
    from radlens_cli.io.formats.decoder import load_decoder, save_decoder
    from radlens_cli.lens.steps import decode

    emb = lens["emb"]
    other = CaseTable(emb.case_id, X, emb.columns, split=emb.split)
    other.path = name
    save_decoder(decode(lens["share"], other, lens["rad"]), str(lens["folder"] / f"{name}.h5"), force=True)
    return other, load_decoder(str(lens["folder"] / f"{name}.h5"), bulk=("train/Z",))


def test_symmetric_readout_matches_the_lens_for_own_shares_and_exact_maps(sym):
    """Independent checks of the symmetric readout on a checkpoint with its own shares (another
    encoder) and on an exact affine map of the reference (read through the reference's shares):
    torch forward == the lens's numpy prediction to 1e-9, re-split 0 == decode's stored eval
    prediction, the affine copy decodes every case as the reference does, and the torch
    gradient equals central finite differences of the numpy prediction."""
    from radlens_cli.saliency.concept import readout_layers

    from radlens_cli.io.formats.decoder import load_decoder

    lens = sym

    cols = ["original_firstorder_S_mean", "original_firstorder_T_mean"]
    torch.manual_seed(11)
    enc2 = LocalEncoder().eval()
    with torch.no_grad():
        X2 = enc2(torch.from_numpy(lens["vols"])).double().numpy()
    emb2, dec2 = _symmetric_decode_of(lens, X2, "dec_other")
    assert dec2.attrs["same_information"] == "no"
    ro = readout_layers(lens["share"], dec2, cols, emb2)
    E = X2[:8]
    fwd = ro.torch(torch.from_numpy(E)).detach().numpy()
    assert np.abs(fwd - ro.numpy(E)).max() < 1e-9
    pred = load_decoder(dec2.path, bulk=("eval/prediction",)).bulk["eval/prediction"]
    rows = {c: k for k, c in enumerate(emb2.case_id)}
    k = [list(dec2.columns).index(c) for c in cols]
    first = ro.lens.predict(X2[[rows[c] for c in dec2.eval_case_id]])[0]
    assert np.allclose(first, pred[:, k], atol=1e-5)
    # gradient w.r.t. the embedding vs central differences of the numpy path
    e = torch.from_numpy(E[:1].copy()).requires_grad_(True)
    ro.torch(e)[0, 0].backward()
    h = 1e-6
    fd = np.array([(ro.numpy(E[:1] + h * np.eye(E.shape[1])[j])[0, 0]
                    - ro.numpy(E[:1] - h * np.eye(E.shape[1])[j])[0, 0]) / (2 * h) for j in range(E.shape[1])])
    assert np.allclose(e.grad.numpy()[0], fd, atol=1e-6 * max(1.0, np.abs(fd).max()))
    # an exact affine map of the reference: the same decoded features, case by case
    rng = np.random.default_rng(5)
    X = lens["emb"].values
    M = rng.normal(size=(X.shape[1], X.shape[1])) + 3 * np.eye(X.shape[1])
    emb3, dec3 = _symmetric_decode_of(lens, X @ M + 2.0, "dec_affine")
    assert dec3.attrs["same_information"] == "exact-affine"
    ro3 = readout_layers(lens["share"], dec3, cols, emb3)
    ro_ref = readout_layers(lens["share"], lens["dec"], cols, lens["emb"])
    assert np.allclose(ro3.numpy(emb3.values[:20]), ro_ref.numpy(X[:20]), atol=1e-6)
    assert np.abs(ro3.torch(torch.from_numpy(emb3.values[:5])).detach().numpy()
                  - ro3.numpy(emb3.values[:5])).max() < 1e-9


def test_symmetric_decoder_without_its_shares_is_refused(sym, tmp_path):
    import h5py

    from radlens_cli.errors import RadlensError
    from radlens_cli.io.formats.decoder import load_decoder
    from radlens_cli.saliency.concept import readout_layers

    import shutil

    lens = sym

    old = tmp_path / "old.h5"
    shutil.copy(lens["dec"].path, old)
    with h5py.File(old, "a") as f:
        del f["resplit/share_weight"]
    with pytest.raises(RadlensError, match="run this radlens's decode again"):
        readout_layers(lens["share"], load_decoder(str(old)), ["original_firstorder_S_mean"])


def test_wrong_embeddings_are_refused(lens):
    from radlens_cli.saliency.concept import readout_layers

    emb = lens["emb"]
    bad = CaseTable(emb.case_id, emb.values[::-1].copy(), emb.columns, split=emb.split)
    bad.path = "shuffled"
    with pytest.raises(Exception, match="does not reproduce"):
        readout_layers(lens["share"], lens["dec"], ["original_firstorder_S_mean"], bad)
