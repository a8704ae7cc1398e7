import numpy as np
import pytest
import SimpleITK as sitk

from radlens_cli.errors import RadlensError
from radlens_cli.io.images import read_image, read_mask, require_same_geometry, resample_like
from radlens_cli.io.manifest import parse_mask_spec


def _write(path, arr, spacing=(1.0, 1.0, 2.0), origin=(0, 0, 0)):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    sitk.WriteImage(img, str(path))
    return img


def test_labels_selected_and_absent_named(tmp_path):
    lab = np.zeros((4, 5, 6), np.uint8)
    lab[1, 1:3, 1:3] = 1
    lab[2, 2:4, 2:4] = 2
    _write(tmp_path / "z.nii.gz", lab)
    m = read_mask(str(tmp_path / "z.nii.gz"), parse_mask_spec("z:1+2"))
    assert sitk.GetArrayFromImage(m).sum() == 8
    assert sitk.GetArrayFromImage(read_mask(str(tmp_path / "z.nii.gz"), parse_mask_spec("z:2"))).sum() == 4
    with pytest.raises(RadlensError, match="label\\(s\\) 3 absent .*labels present: \\[1, 2\\]"):
        read_mask(str(tmp_path / "z.nii.gz"), parse_mask_spec("z:3"))
    _write(tmp_path / "e.nii.gz", np.zeros((4, 5, 6), np.uint8))
    with pytest.raises(RadlensError, match="mask is empty"):
        read_mask(str(tmp_path / "e.nii.gz"), parse_mask_spec("e"))


def test_missing_and_corrupt_named(tmp_path):
    with pytest.raises(RadlensError, match="file not found"):
        read_image(str(tmp_path / "no.nii.gz"))
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image at all")
    with pytest.raises(RadlensError, match="cannot read image .*bad.nii.gz"):
        read_image(str(tmp_path / "bad.nii.gz"))


def test_geometry_mismatch_described(tmp_path):
    a = _write(tmp_path / "a.nii.gz", np.zeros((4, 5, 6), np.float32))
    b = _write(tmp_path / "b.nii.gz", np.zeros((4, 5, 6), np.float32), spacing=(0.5, 0.5, 2.0))
    with pytest.raises(RadlensError, match="geometry mismatch .*spacing"):
        require_same_geometry(a, b, "a", "b")


def test_resample_in_physical_space():
    ref = sitk.Image([8, 8, 4], sitk.sitkFloat32)
    ref.SetSpacing((1.0, 1.0, 1.0))
    coarse = sitk.GetImageFromArray(np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4))
    coarse.SetSpacing((2.0, 2.0, 2.0))
    out = resample_like(coarse, ref, "nearest")
    assert out.GetSize() == ref.GetSize()
    # voxel (x=2,y=2,z=2) in physical (2,2,2) is coarse voxel (1,1,1)
    assert sitk.GetArrayFromImage(out)[2, 2, 2] == sitk.GetArrayFromImage(coarse)[1, 1, 1]
