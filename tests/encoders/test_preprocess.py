"""Preprocessing: one physical grid around the mask, whatever grids the sequences come on."""

import os

import numpy as np
import pytest
import SimpleITK as sitk

from radlens_cli.encoders.preprocess import CaseDataset, PreprocessConfig, preprocess_case
from radlens_cli.errors import RadlensError, UsageError
from radlens_cli.io.manifest import MaskSpec, parse_mask_spec, read_manifest
from tests.encoders.conftest import write_case, write_cohort, write_dicom_series

CFG = dict(spacing=(1.0, 1.0, 2.0), crop=(32, 32, 16))  # x, y, z


def physical(img, idx_xyz):
    """Physical points of (n, 3) continuous x,y,z indices, computed with numpy."""
    d = np.array(img.GetDirection()).reshape(3, 3)
    return np.asarray(img.GetOrigin()) + (np.asarray(idx_xyz) * np.asarray(img.GetSpacing())) @ d.T


@pytest.mark.parametrize("direction", [None, (-1, 0, 0, 0, -1, 0, 0, 0, 1)])
def test_mask_centre_is_box_centre(tmp_path, direction):
    names = write_case(str(tmp_path), "c", seed=3, direction=direction)
    p = {k: str(tmp_path / v) for k, v in names.items()}
    cfg = PreprocessConfig(["t2", "adc", "dwi"], MaskSpec("gland"), **CFG)
    out = preprocess_case([p["t2"], p["adc"], p["dwi"]], p["gland"], cfg)
    vol, roi = out["volume"], out["mask"]
    assert vol.shape == (3, 16, 32, 32) and vol.dtype == np.float32 and roi.shape == (16, 32, 32)
    nz = np.nonzero(roi)
    centre = [(a.min() + a.max()) / 2 for a in nz]
    assert np.allclose(centre, [(s - 1) / 2 for s in roi.shape], atol=1.0)
    # the ROI keeps its physical volume (nearest-neighbour resampling, within a voxel's rim)
    mask = sitk.ReadImage(p["gland"])
    vol_mm3 = sitk.GetArrayFromImage(mask).sum() * np.prod(mask.GetSpacing())
    assert abs(roi.sum() * 1 * 1 * 2 - vol_mm3) / vol_mm3 < 0.25
    # each channel z-scored over its valid voxels
    for c in range(3):
        sel = vol[c] != 0
        assert abs(vol[c][sel].mean()) < 0.05 and abs(vol[c][sel].std() - 1) < 0.05


def test_coarse_smaller_fov_sequence_lands_on_the_box(tmp_path):
    """ADC at 2x2x3 mm on a smaller field of view: values follow its physical position,
    and the box is padded (0) where the ADC's field of view ends."""
    names = write_case(str(tmp_path), "c", seed=0)
    t2 = sitk.ReadImage(str(tmp_path / names["t2"]))
    mask = sitk.ReadImage(str(tmp_path / names["gland"]))
    size, sp = np.array([10, 8, 6]), np.array([2.0, 2.0, 3.0])
    arr_m = sitk.GetArrayFromImage(mask)
    nz = np.nonzero(arr_m)
    lo, hi = np.array([a.min() for a in nz][::-1]), np.array([a.max() for a in nz][::-1])
    centre = physical(mask, [(lo + hi) / 2])[0]
    adc_origin = centre + np.array([-4.0, -9.0, -6.0])  # box reaches past this FOV on every side
    kk, jj, ii = np.mgrid[0:size[2], 0:size[1], 0:size[0]]
    pts = adc_origin + np.stack([ii, jj, kk], -1) * sp
    f = lambda q: 500 + 3.0 * q[..., 0] - 2.0 * q[..., 1] + 1.5 * q[..., 2]  # noqa: E731
    adc = sitk.GetImageFromArray(f(pts).astype(np.float32))
    adc.SetSpacing(tuple(sp))
    adc.SetOrigin(tuple(adc_origin))
    sitk.WriteImage(adc, str(tmp_path / "adc_lin.nii.gz"))

    cfg = PreprocessConfig(["t2", "adc"], MaskSpec("gland"), **CFG)
    vol = preprocess_case([str(tmp_path / names["t2"]), str(tmp_path / "adc_lin.nii.gz")],
                          str(tmp_path / names["gland"]), cfg)["volume"][1]
    # physical position of every box voxel, from the design: centred, T2's orientation, its
    # first voxel on the lattice of T2 resampled at the box spacing, corners aligned
    d = np.array(t2.GetDirection()).reshape(3, 3)
    box_sp, box_size = np.array([1.0, 1.0, 2.0]), np.array([32, 32, 16])
    first = centre - d @ (box_sp * (box_size - 1) / 2)
    anchor = np.asarray(t2.GetOrigin()) + d @ ((box_sp - np.asarray(t2.GetSpacing())) / 2)
    first = anchor + d @ (box_sp * np.round(d.T @ (first - anchor) / box_sp))
    assert np.abs(first - (centre - d @ (box_sp * (box_size - 1) / 2))).max() <= box_sp.max() / 2 + 1e-9
    kk, jj, ii = np.mgrid[0:16, 0:32, 0:32]
    idx = np.stack([ii, jj, kk], -1).astype(float)
    q = first + (idx * box_sp) @ d.T
    cont = (q - adc_origin) / sp
    inside = np.all((cont >= 1e-6) & (cont <= size - 1 - 1e-6), -1)
    # past the last voxel centre is outside, even within half a voxel (no extrapolation)
    outside = np.any((cont < -1e-6) | (cont > size - 1 + 1e-6), -1)
    assert inside.sum() > 100 and outside.sum() > 100
    assert np.any(outside & np.all((cont > -0.5) & (cont < size - 0.5), -1))
    assert np.all(vol[outside] == 0)
    # inside: an affine function (the z-score) of the true values, to float precision
    x, y = f(q[inside]), vol[inside]
    slope, icpt = np.polyfit(x, y, 1)
    assert slope > 0 and np.abs(y - (slope * x + icpt)).max() < 1e-4 * np.ptp(y)


def test_dicom_series_equals_its_nifti(tmp_path):
    names = write_case(str(tmp_path), "c", seed=1)
    t2 = sitk.ReadImage(str(tmp_path / names["t2"]))
    write_dicom_series(t2, str(tmp_path / "t2 dicom"))
    rounded = sitk.GetImageFromArray(np.round(sitk.GetArrayFromImage(t2)).astype(np.float32))
    rounded.CopyInformation(t2)
    sitk.WriteImage(rounded, str(tmp_path / "t2r.nii.gz"))
    cfg = PreprocessConfig(["t2", "adc"], MaskSpec("gland"), **CFG)
    a = preprocess_case([str(tmp_path / "t2 dicom"), str(tmp_path / names["adc"])], str(tmp_path / names["gland"]), cfg)
    b = preprocess_case([str(tmp_path / "t2r.nii.gz"), str(tmp_path / names["adc"])], str(tmp_path / names["gland"]), cfg)
    assert np.allclose(a["volume"], b["volume"], atol=1e-4) and np.array_equal(a["mask"], b["mask"])


def test_zone_labels_percentile_and_lesion_mask(tmp_path):
    names = write_case(str(tmp_path), "c", seed=2, zones=True)
    p = {k: str(tmp_path / v) for k, v in names.items()}
    cfg = PreprocessConfig(["t2"], parse_mask_spec("gland:1+2"), norm="percentile", **CFG)
    out = preprocess_case([p["t2"]], p["gland"], cfg, seg_target_path=p["gland"],
                          seg_target_spec=parse_mask_spec("gland:1"))
    assert out["volume"].min() >= 0 and out["volume"].max() <= 1
    assert 0 < out["seg_target"].sum() < out["mask"].sum()
    pz = preprocess_case([p["t2"]], p["gland"], PreprocessConfig(["t2"], parse_mask_spec("gland:1"), **CFG))
    assert pz["mask"].sum() < out["mask"].sum()
    with pytest.raises(RadlensError, match=r"label\(s\) 3 absent"):
        preprocess_case([p["t2"]], p["gland"], PreprocessConfig(["t2"], parse_mask_spec("gland:3"), **CFG))
    with pytest.raises(RadlensError, match="case c7: t2: file not found"):
        preprocess_case([str(tmp_path / "nope.nii.gz")], p["gland"], cfg, case_id="c7")
    far = sitk.ReadImage(p["adc"])
    far.SetOrigin((500.0, 500.0, 500.0))
    sitk.WriteImage(far, str(tmp_path / "far.nii.gz"))
    with pytest.raises(RadlensError, match="adc: image .*far.nii.gz does not overlap"):
        preprocess_case([p["t2"], str(tmp_path / "far.nii.gz")], p["gland"],
                        PreprocessConfig(["t2", "adc"], MaskSpec("gland"), **CFG))


def test_config_round_trip_and_validation():
    cfg = PreprocessConfig(["t2", "adc"], parse_mask_spec("zones:1+2"), spacing=(1, 1, 2), crop=(16, 16, 8))
    again = PreprocessConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and again.key() == cfg.key()
    assert PreprocessConfig(["t2", "adc"], "zones:1+2").key() != cfg.key()
    with pytest.raises(UsageError):
        PreprocessConfig(["t2"], "gland", norm="minmax")
    with pytest.raises(UsageError):
        PreprocessConfig(["t2"], "gland", crop=(0, 16, 16))


def test_dataset_cache_is_exact_and_keyed_by_inputs(tmp_path):
    path = write_cohort(str(tmp_path / "c"), n=2)
    man = read_manifest(path)
    cfg = PreprocessConfig(["t2", "dwi", "adc"], MaskSpec("gland"), **CFG)
    cache = str(tmp_path / "cache")
    plain = CaseDataset(man, cfg)[1]
    first = CaseDataset(man, cfg, cache_dir=cache)
    a = first[1]
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("p01-")
    b = CaseDataset(man, cfg, cache_dir=cache)[1]  # read from the cache
    assert a["case_id"] == "p01" and a["volume"].dtype.is_floating_point
    assert np.array_equal(a["volume"].numpy(), b["volume"].numpy())
    assert np.array_equal(plain["volume"].numpy(), b["volume"].numpy())
    other = CaseDataset(man, PreprocessConfig(["t2", "dwi", "adc"], MaskSpec("gland"), norm="percentile", **CFG),
                        cache_dir=cache)
    key = first.cache_key(1)
    assert other.cache_key(1) != key
    img = tmp_path / "c" / "p01_adc.nii.gz"
    im = sitk.ReadImage(str(img))
    sitk.WriteImage(im * 2, str(img))
    assert CaseDataset(man, cfg, cache_dir=cache).cache_key(1) != key


def test_a_cache_entry_left_half_written_by_a_killed_worker_is_swept(tmp_path):
    """A worker killed (SIGKILL, out of memory) while writing a volume-cache entry leaves its
    temporary `<entry>.<pid>.tmp`; the next CaseDataset on that cache removes it, and leaves
    a temporary whose writer is still alive."""
    import subprocess
    import sys

    cache = tmp_path / "cache"
    cache.mkdir()
    code = ("import os, signal, numpy as np\n"
            "import radlens_cli.encoders.preprocess as pp\n"
            "np.savez = lambda fh, **a: (fh.write(b'half'), fh.flush(), os.kill(os.getpid(), signal.SIGKILL))\n"
            f"pp.save_npz_atomic({str(cache / 'p00-abc.npz')!r}, volume=np.zeros(3))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert r.returncode == -9
    left = os.listdir(cache)
    assert len(left) == 1 and left[0].startswith("p00-abc.npz.") and left[0].endswith(".tmp")
    alive = cache / f"p01-abc.npz.{os.getpid()}.tmp"  # this process: a writer still at work
    alive.write_bytes(b"x")
    path = write_cohort(str(tmp_path / "c"), n=1)
    CaseDataset(read_manifest(path), PreprocessConfig(["t2"], MaskSpec("gland"), **CFG), cache_dir=str(cache))
    assert os.listdir(cache) == [alive.name]
