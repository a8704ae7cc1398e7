"""Input conventions: --orient native|RAS|LPS, --layout zyx|xyz, x,y,z crops, norms, no extrapolation.

The phantom is an oblique, sagittally stored scan (voxel axes along P, I, L, tilted 10 degrees)
with one marked voxel at a known physical position; each convention must put it at the
tensor index its definition gives (the box's own axes, not world-aligned ones)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from radlens_cli.encoders.preprocess import PreprocessConfig, preprocess_case
from radlens_cli.io.manifest import MaskSpec

SIZE = (20, 24, 16)  # x, y, z voxels of the stored image
SPACING = (1.0, 1.5, 2.0)
MARK = np.array([13, 7, 11])  # voxel index of the marked voxel
CENTRE = np.array([9, 12, 8])  # voxel index of the mask's bounding-box centre
CROP = (15, 17, 13)  # x, y, z of the box (odd: the centre voxel is the mask centre)


def _rot(deg):
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


# stored axes: i -> posterior (+y LPS), j -> inferior (-z), k -> left (+x), then tilted
BASE = np.array([[0, 0, 1], [1, 0, 0], [0, -1, 0]], dtype=float)
DIRECTION = _rot(10) @ BASE


def _phantom(folder, name="s", direction=DIRECTION, permute=None):
    arr = np.ones(SIZE[::-1], np.float32) * 10.0  # (z, y, x)
    arr[MARK[2], MARK[1], MARK[0]] = 1000.0
    mask = np.zeros(SIZE[::-1], np.uint8)
    c = CENTRE
    mask[c[2] - 2:c[2] + 3, c[1] - 2:c[1] + 3, c[0] - 2:c[0] + 3] = 1
    origin = np.array([-12.0, 30.0, 7.0])
    paths = []
    for what, a in (("img", arr), ("mask", mask)):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing(SPACING)
        img.SetDirection(tuple(direction.ravel()))
        img.SetOrigin(tuple(origin))
        if permute is not None:  # the same scan stored with another voxel axis order
            img = sitk.PermuteAxes(img, permute[0])
            img = sitk.Flip(img, permute[1])
        p = str(folder / f"{name}_{what}.nii.gz")
        sitk.WriteImage(img, p)
        paths.append(p)
    return paths


def _box_axes(orient):
    """Expected box axes (unit vectors, LPS) and spacings, from the definition."""
    cols = [DIRECTION[:, a] for a in range(3)]
    if orient == "native":
        return cols, SPACING
    # nearest stored axis to each world axis: x <- k (L), y <- i (P), z <- j (I)
    if orient == "RAS":  # point to Right (-x), Anterior (-y), Superior (+z)
        return [-cols[2], -cols[0], -cols[1]], (SPACING[2], SPACING[0], SPACING[1])
    return [cols[2], cols[0], -cols[1]], (SPACING[2], SPACING[0], SPACING[1])  # LPS


def _physical(idx):
    origin = np.array([-12.0, 30.0, 7.0])
    return origin + DIRECTION @ (np.asarray(SPACING) * idx)


@pytest.mark.parametrize("orient", ["native", "RAS", "LPS"])
@pytest.mark.parametrize("layout", ["zyx", "xyz"])
def test_marked_voxel_lands_at_its_index(tmp_path, orient, layout):
    img, mask = _phantom(tmp_path)
    axes, spacing = _box_axes(orient)
    cfg = PreprocessConfig(["t2"], MaskSpec("mask"), spacing=spacing, crop=CROP, norm="none",
                           orient=orient, layout=layout)
    vol = preprocess_case([img], mask, cfg)["volume"][0]
    offset = _physical(MARK) - _physical(CENTRE)
    xyz = [int(round((CROP[w] - 1) / 2 + offset @ axes[w] / spacing[w])) for w in range(3)]
    expect = tuple(xyz[::-1]) if layout == "zyx" else tuple(xyz)
    assert vol.shape == ((CROP[::-1]) if layout == "zyx" else CROP)
    assert vol[expect] == pytest.approx(1000.0, abs=1e-3)
    assert np.count_nonzero(vol > 500) == 1
    if orient == "RAS":  # the box's x axis points (nearly) to the patient's right: -x in LPS
        assert axes[0][0] < -0.9 and axes[1][1] < -0.9 and axes[2][2] > 0.9


def test_same_scan_stored_two_ways_gives_the_same_tensor(tmp_path):
    a = _phantom(tmp_path, "a")
    b = _phantom(tmp_path, "b", permute=((2, 0, 1), (True, False, True)))
    assert sitk.ReadImage(a[0]).GetSize() != sitk.ReadImage(b[0]).GetSize()
    for orient in ("RAS", "LPS"):
        cfg = PreprocessConfig(["t2"], MaskSpec("mask"), spacing=(1.7, 1.1, 1.3), crop=CROP, norm="zscore",
                               orient=orient, layout="xyz")
        va = preprocess_case([a[0]], a[1], cfg)["volume"]
        vb = preprocess_case([b[0]], b[1], cfg)["volume"]
        assert np.allclose(va, vb, atol=1e-4)
    # native follows each file's own axes: the two storages differ
    cfg = PreprocessConfig(["t2"], MaskSpec("mask"), spacing=(1.7, 1.1, 1.3), crop=(15, 15, 15), norm="none")
    assert not np.allclose(preprocess_case([a[0]], a[1], cfg)["volume"], preprocess_case([b[0]], b[1], cfg)["volume"])


def test_box_taller_than_the_scan_is_padded_not_extrapolated(tmp_path):
    img, mask = _phantom(tmp_path)
    # along the stored j axis (2 mm x 24 = from the centre 12 voxels back, 11 on): a 1 mm box
    # of 101 planes reaches far past both ends; the planes between the last voxel centre and
    # the voxel's outer edge would be filled by ITK's edge clamping
    cfg = PreprocessConfig(["t2"], MaskSpec("mask"), spacing=(1.0, 1.5, 0.5), crop=(3, 3, 101), norm="none")
    vol = preprocess_case([img], mask, cfg)["volume"][0]  # (z, y, x): z is stored axis k (2 mm)
    filled = np.flatnonzero(vol[:, 1, 1] != 0)
    # the 0.5 mm lattice keeps the scan's outer edge (1 mm before its first voxel centre): its
    # planes sit at -0.75 + 0.5 n mm from that centre. The mask centre (k = 8, 16 mm) puts the
    # box's plane 50 at 16.25 mm (a tie broken upwards), so plane p is at -8.75 + 0.5 p mm;
    # inside the scan (0 to 30 mm, k = 0..15) are p = 18 (0.25 mm) to p = 77 (29.75 mm)
    assert filled.min() == 18 and filled.max() == 77 and np.all(np.diff(filled) == 1)


def test_norms_window_none_and_volume_region(tmp_path):
    img, mask = _phantom(tmp_path)
    base = dict(spacing=SPACING, crop=CROP)
    w = preprocess_case([img], mask, PreprocessConfig(["t2"], "mask", norm="window:0,20", **base))["volume"]
    assert set(np.unique(w).round(6)) <= {0.0, 0.5, 1.0} and (w == 0.5).sum() > 100
    box = preprocess_case([img], mask, PreprocessConfig(["t2"], "mask", norm="zscore", **base))["volume"]
    vol = preprocess_case([img], mask, PreprocessConfig(["t2"], "mask", norm="zscore", norm_region="volume",
                                                        **base))["volume"]
    arr = sitk.GetArrayFromImage(sitk.ReadImage(img)).astype(np.float64)
    expect = (1000.0 - arr.mean()) / arr.std()  # statistics of the whole stored volume
    assert vol.max() == pytest.approx(expect, rel=1e-5)
    assert box.max() != pytest.approx(expect, rel=1e-3)
    from radlens_cli.errors import UsageError

    for bad in ("window:5,1", "window:a,b", "minmax"):
        with pytest.raises(UsageError):
            PreprocessConfig(["t2"], "mask", norm=bad)
    with pytest.raises(UsageError, match="^orient must be one of") as err:  # the library speaks of values
        PreprocessConfig(["t2"], "mask", orient="RAI")
    assert err.value.flagged().startswith("--orient must be one of")  # what the command prints


def test_conventions_through_the_cli_are_recorded(cli, tmp_path):
    from radlens_cli.io.tables import read_table

    img, mask = _phantom(tmp_path)
    man = tmp_path / "m.csv"
    man.write_text(f"case_id,t2,mask\nc0,{img},{mask}\n")
    r = cli("init-encoder", "--arch", "atto", "--in-chans", "1", "-o", tmp_path / "e.pt")
    assert r.exit_code == 0, r
    args = ["embed", man, "--modalities", "t2", "--mask", "mask", "--encoder", tmp_path / "e.pt",
            "--spacing", "2,1,1.5", "--crop", "32,32,16", "--layer", "stage2"]
    r = cli(*args, "--orient", "RAS", "--layout", "xyz", "--norm", "window:0,20", "--norm-region", "volume",
            "-o", tmp_path / "a.h5")
    assert r.exit_code == 0, r
    with h5py.File(tmp_path / "a.h5") as f:
        pre = json.loads(f.attrs["params"])["preprocessing"]
    assert (pre["orient"], pre["layout"], pre["norm"], pre["norm_region"], pre["crop"], pre["crop_order"]) == \
        ("RAS", "xyz", "window:0,20", "volume", [32, 32, 16], "x,y,z")
    r = cli(*args, "-o", tmp_path / "b.h5")
    assert r.exit_code == 0, r
    assert not np.allclose(read_table(str(tmp_path / "a.h5")).values, read_table(str(tmp_path / "b.h5")).values)
    r = cli(*args, "--orient", "sideways", "-o", tmp_path / "c.h5")
    assert r.exit_code == 2 and "--orient" in r.stderr


def test_box_is_snapped_to_the_scan_lattice(tmp_path):
    """A mask whose centre falls between voxels: the box still samples the scan's own voxel
    centres (the marked voxel keeps its value), and rounding noise in the stored geometry
    changes nothing."""
    img, mask = _phantom(tmp_path)
    m = sitk.ReadImage(mask)
    arr = sitk.GetArrayFromImage(m)
    arr[:, :, CENTRE[0] + 3] = arr[:, :, CENTRE[0] + 2]  # 6 voxels wide: centre at x + 0.5
    half = sitk.GetImageFromArray(arr)
    half.CopyInformation(m)
    sitk.WriteImage(half, str(tmp_path / "half.nii.gz"))
    cfg = PreprocessConfig(["t2"], MaskSpec("mask"), spacing=SPACING, crop=(15, 17, 13), norm="none")
    vol = preprocess_case([img], str(tmp_path / "half.nii.gz"), cfg)["volume"][0]
    assert vol.max() == pytest.approx(1000.0, abs=1e-3) and np.count_nonzero(vol > 11) == 1
    noisy = sitk.ReadImage(img)
    noisy.SetOrigin(tuple(np.array(noisy.GetOrigin()) + 3e-7))
    sitk.WriteImage(noisy, str(tmp_path / "noisy.nrrd"))
    again = preprocess_case([str(tmp_path / "noisy.nrrd")], str(tmp_path / "half.nii.gz"), cfg)["volume"][0]
    assert np.array_equal(again != 0, vol != 0) and np.allclose(again, vol, atol=1e-3)


def test_finetune_records_conventions_and_embed_reuses_them(cli, tmp_path):
    import torch

    from radlens_cli.encoders.checkpoints import save_radlens_checkpoint
    from radlens_cli.encoders.convnextv2 import build_encoder
    from tests.commands.test_finetune import base_args, build_cohort

    manifest = build_cohort(tmp_path / "cases", n=4)
    torch.manual_seed(0)
    enc = tmp_path / "pre.pt"
    save_radlens_checkpoint(str(enc), build_encoder("atto", 1), "convnextv2_atto", 1, None)
    out = tmp_path / "ft.pt"
    r = cli("finetune", *base_args({"manifest": manifest, "encoder": enc}, task="regress", target="vol_ml", epochs=1),
            "--orient", "LPS", "--layout", "xyz", "--norm", "window:50,200", "-o", out)
    assert r.exit_code == 0, r
    pre = torch.load(out, weights_only=True)["preprocessing"]
    assert (pre["orient"], pre["layout"], pre["norm"], pre["crop"]) == ("LPS", "xyz", "window:50,200", [32, 32, 16])
    r = cli("embed", manifest, "--modalities", "t2", "--mask", "gland", "--encoder", out, "-o", tmp_path / "e.h5")
    assert r.exit_code == 0, r
    with h5py.File(tmp_path / "e.h5") as f:
        used = json.loads(f.attrs["params"])["preprocessing"]
    assert {k: used[k] for k in ("orient", "layout", "norm", "crop")} == \
        {"orient": "LPS", "layout": "xyz", "norm": "window:50,200", "crop": [32, 32, 16]}
