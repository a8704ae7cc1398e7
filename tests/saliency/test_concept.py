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


@pytest.fixture(scope="module")
def lens(tmp_path_factory):
    from radlens_cli.encoders.infer import Embedder
    from radlens_cli.encoders.info import EncoderInfo
    from radlens_cli.io.formats.decoder import load_decoder, save_decoder
    from radlens_cli.io.formats.share import load_share, save_share
    from radlens_cli.lens.share import ShareModel
    from radlens_cli.lens.steps import decode, fit_share_tables

    folder = tmp_path_factory.mktemp("concept")
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
    share = fit_share_tables(emb, rad_t, seed=0, method="calibrated")
    save_share(share, str(folder / "share.h5"))
    res = decode(share, emb, rad_t)
    save_decoder(res, str(folder / "dec.h5"))
    embedder = Embedder(enc, EncoderInfo(spec="local", source="factory", arch="custom"), "local", "final", "mean",
                        torch.device("cpu"))
    return {"share": ShareModel.from_record(load_share(str(folder / "share.h5"))), "dec": load_decoder(str(folder / "dec.h5"),
                                                                               bulk=("train/Z",)),
            "emb": emb, "embedder": embedder, "vols": vols, "enc": enc}


def mass_in(m, region):
    m = np.clip(m, 0, None)
    return float(m[region].sum() / m.sum())


@pytest.mark.parametrize("method", ["integrated-gradients", "gradient"])
def test_planted_feature_map_concentrates_in_its_sub_region(lens, method):
    from radlens_cli.saliency.concept import ConceptMaps, readout_layers

    cols = ["original_firstorder_S_mean", "original_firstorder_T_mean"]
    dec = lens["dec"]
    r2 = dict(zip(dec.columns, dec.r2))
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
    """The torch readout gives what decode predicted for the eval cases (stored in DEC.h5)."""
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
    assert np.allclose(got, full.bulk["eval/prediction"][:4], atol=1e-4)


def test_wrong_embeddings_are_refused(lens):
    from radlens_cli.saliency.concept import readout_layers

    emb = lens["emb"]
    bad = CaseTable(emb.case_id, emb.values[::-1].copy(), emb.columns, split=emb.split)
    bad.path = "shuffled"
    with pytest.raises(Exception, match="does not reproduce"):
        readout_layers(lens["share"], lens["dec"], ["original_firstorder_S_mean"], bad)
